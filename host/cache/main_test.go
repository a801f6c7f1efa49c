package cache

import (
	"os"
	"sync"
	"testing"

	"github.com/wingman-app/wingate/host/internal/testkit"
)

// The package's tests share one Redis Cluster, started by the first test
// that needs it and stopped after the last.
var (
	clusterOnce sync.Once
	cluster     *testkit.RedisCluster
	clusterErr  error
)

func sharedCluster(t testing.TB) *testkit.RedisCluster {
	t.Helper()
	clusterOnce.Do(func() { cluster, clusterErr = testkit.StartRedisCluster() })
	if clusterErr != nil {
		t.Fatalf("start a Redis Cluster: %v", clusterErr)
	}
	return cluster
}

func TestMain(m *testing.M) {
	code := m.Run()
	if cluster != nil {
		cluster.Stop()
	}
	os.Exit(code)
}
