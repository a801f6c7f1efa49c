package cache

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wingman-app/wingate/host/internal/testkit"
)

// redisClient returns a go-redis client of rs with the cache's short
// timeouts, closed when the test ends.
func redisClient(t testing.TB, rs *testkit.Redis) redis.UniversalClient {
	t.Helper()
	opt, err := RedisOptions(rs.URL(), 0)
	if err != nil {
		t.Fatal(err)
	}
	cl := redis.NewClient(opt)
	t.Cleanup(func() { cl.Close() })
	return cl
}

func testPrefix(t testing.TB) string {
	return fmt.Sprintf("wingate-test:%s:%d", t.Name(), time.Now().UnixNano())
}
