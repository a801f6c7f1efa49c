package drill

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/wingman-app/wingate/host/internal/testkit"
)

// redisKeys counts the keys of a private redis-server.
func redisKeys(r *testkit.Redis) int64 {
	cl := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n, _ := cl.DBSize(ctx).Result()
	return n
}
