package rollout

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisNotifier is a Notifier over Redis pub/sub on one channel, with
// PUBLISH/SUBSCRIBE: on a Redis Cluster the cluster bus carries each
// notice to every node (policy changes are rare).
type RedisNotifier struct {
	rdb     redis.UniversalClient
	channel string
}

var _ Notifier = (*RedisNotifier)(nil)

// NewRedisNotifier returns a notifier publishing on channel (e.g.
// "wingate:policy"; a fleet shares it, a test uses its own).
func NewRedisNotifier(rdb redis.UniversalClient, channel string) *RedisNotifier {
	return &RedisNotifier{rdb: rdb, channel: channel}
}

// Notify implements Notifier.
func (n *RedisNotifier) Notify(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return n.rdb.Publish(ctx, n.channel, "changed").Err()
}

// Listen implements Notifier. After a lost subscription it resubscribes
// and calls fn once, since notifications may have been missed.
func (n *RedisNotifier) Listen(ctx context.Context, fn func()) {
	for ctx.Err() == nil {
		sub := n.rdb.Subscribe(ctx, n.channel)
		if _, err := sub.Receive(ctx); err != nil {
			sub.Close()
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		fn()
		ch := sub.Channel()
	recv:
		for {
			select {
			case <-ctx.Done():
				sub.Close()
				return
			case _, ok := <-ch:
				if !ok {
					break recv
				}
				fn()
			}
		}
		sub.Close()
	}
}
