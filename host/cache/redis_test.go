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
	return openClient(t, rs.URL())
}

// openClient opens url with OpenRedis, closed when the test ends.
func openClient(t testing.TB, url string) redis.UniversalClient {
	t.Helper()
	cl, _, err := OpenRedis(url, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func testPrefix(t testing.TB) string {
	return fmt.Sprintf("wingate-test:%s:%d", t.Name(), time.Now().UnixNano())
}
