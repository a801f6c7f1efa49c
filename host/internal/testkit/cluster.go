package testkit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisNode is one redis-server process of a RedisCluster or a
// RedisSentinel, run in its own process group.
type RedisNode struct {
	Port int
	cmd  *exec.Cmd
}

// Addr returns the node's host:port.
func (n *RedisNode) Addr() string { return "127.0.0.1:" + strconv.Itoa(n.Port) }

// Kill ends the node's process group abruptly, as a crash would, and
// waits for it. Killing a node twice is harmless.
func (n *RedisNode) Kill() {
	if n.cmd == nil || n.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-n.cmd.Process.Pid, syscall.SIGKILL)
	_ = n.cmd.Wait()
	n.cmd = nil
}

func startNode(dir string, port int, args ...string) (*RedisNode, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server is not installed: %w", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	// Its own process group, killed whole; and killed with the test
	// binary should that die without cleaning up.
	cmd.SysProcAttr = nodeProcAttr()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	n := &RedisNode{Port: port, cmd: cmd}
	cl := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
	defer cl.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := cl.Ping(ctx).Err()
		cancel()
		if err == nil {
			return n, nil
		}
		if time.Now().After(deadline) {
			n.Kill()
			return nil, fmt.Errorf("redis-server on %s did not answer: %v; output: %s", n.Addr(), err, out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// freePorts returns n distinct loopback TCP ports that were free a moment
// ago.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// RedisCluster is a Redis Cluster of redis-server child processes on
// loopback: three primaries with one replica each, in a temporary
// directory, with a 1 s node timeout so that a killed primary's replica
// takes over in a couple of seconds.
type RedisCluster struct {
	Nodes []*RedisNode
	// StartTime is how long StartRedisCluster took, from the first process
	// started to every node reporting cluster_state:ok.
	StartTime time.Duration
	dir       string
	mu        sync.Mutex
}

// StartRedisCluster starts a six-node cluster (redis-cli --cluster create
// with one replica a primary) and waits until every node reports
// cluster_state:ok. Stop ends it. It takes no testing.TB so that a
// package's TestMain can share one cluster between its tests.
func StartRedisCluster() (_ *RedisCluster, err error) {
	start := time.Now()
	dir, err := os.MkdirTemp("", "wingate-redis-cluster-")
	if err != nil {
		return nil, err
	}
	c := &RedisCluster{dir: dir}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	ports, err := freePorts(12)
	if err != nil {
		return nil, err
	}
	for i := range 6 {
		p, bus := ports[i], ports[6+i]
		n, err := startNode(dir, p, "--port", strconv.Itoa(p), "--cluster-port", strconv.Itoa(bus),
			"--bind", "127.0.0.1", "--cluster-enabled", "yes", "--cluster-config-file", "nodes-"+strconv.Itoa(p)+".conf",
			"--cluster-node-timeout", "1000", "--repl-diskless-sync-delay", "0", "--save", "", "--appendonly", "no", "--daemonize", "no",
			"--loglevel", "warning", "--dir", dir)
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		return nil, fmt.Errorf("redis-cli is not installed: %w", err)
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("redis-cli --cluster create: %v: %s", err, out)
	}
	if err := c.WaitOK(ctx); err != nil {
		return nil, err
	}
	// A replica can take over only once it has synced with its primary.
	for _, n := range c.Nodes {
		if err := waitReplicaLinked(ctx, n); err != nil {
			return nil, err
		}
	}
	c.StartTime = time.Since(start)
	return c, nil
}

// waitReplicaLinked waits, if n is a replica, until its link with its
// primary is up.
func waitReplicaLinked(ctx context.Context, n *RedisNode) error {
	cl := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
	defer cl.Close()
	for {
		info, err := cl.Info(ctx, "replication").Result()
		if err == nil && (strings.Contains(info, "role:master") || strings.Contains(info, "master_link_status:up")) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replica %s not linked: %v %s", n.Addr(), err, info)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// WaitPromoted waits until a replica has replaced the lost primary: the
// cluster is ok and none of its primaries is lost.
func (c *RedisCluster) WaitPromoted(ctx context.Context, lost *RedisNode) error {
	for {
		err := c.WaitOK(ctx)
		if err != nil {
			return err
		}
		p, err := c.Primaries(ctx)
		if err == nil && len(p) == 3 && !slices.Contains(p, lost) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no replica promoted: primaries %d, %v", len(p), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Addrs returns every node's host:port.
func (c *RedisCluster) Addrs() []string {
	a := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		a[i] = n.Addr()
	}
	return a
}

// URL returns a redis+cluster:// URL listing every node.
func (c *RedisCluster) URL() string { return "redis+cluster://" + strings.Join(c.Addrs(), ",") }

// WaitOK waits until every live node reports cluster_state:ok with all
// 16384 slots served by a primary that is up.
func (c *RedisCluster) WaitOK(ctx context.Context) error {
	var last error
	for {
		last = c.checkOK(ctx)
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not ok: %v", last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *RedisCluster) checkOK(ctx context.Context) error {
	c.mu.Lock()
	nodes := append([]*RedisNode(nil), c.Nodes...)
	c.mu.Unlock()
	for _, n := range nodes {
		if n.cmd == nil {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
		info, err := cl.ClusterInfo(ctx).Result()
		cl.Close()
		if err != nil {
			return err
		}
		if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
			return errors.New(n.Addr() + ": " + strings.Join(strings.Fields(info)[:6], " "))
		}
	}
	return nil
}

// Primaries returns the nodes that are primaries now, as the first live
// node sees them.
func (c *RedisCluster) Primaries(ctx context.Context) ([]*RedisNode, error) {
	for _, n := range c.Nodes {
		if n.cmd == nil {
			continue
		}
		cl := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
		text, err := cl.ClusterNodes(ctx).Result()
		cl.Close()
		if err != nil {
			return nil, err
		}
		var out []*RedisNode
		for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
			f := strings.Fields(line)
			if len(f) < 3 || !strings.Contains(f[2], "master") || strings.Contains(f[2], "fail") {
				continue
			}
			addr, _, _ := strings.Cut(f[1], "@")
			for _, m := range c.Nodes {
				if m.Addr() == addr {
					out = append(out, m)
				}
			}
		}
		return out, nil
	}
	return nil, errors.New("no live node")
}

// Stop kills every node and removes the directory.
func (c *RedisCluster) Stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.Nodes {
		n.Kill()
	}
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
}

// RedisSentinel is a primary, one replica and one sentinel watching them
// under the name "primary", with a 1 s down-after time.
type RedisSentinel struct {
	Primary, Replica, Sentinel *RedisNode
	dir                        string
}

// StartRedisSentinel starts a primary, a replica and a sentinel, waits
// until the sentinel knows the replica, and stops them all when tb ends.
func StartRedisSentinel(tb interface {
	Helper()
	Fatal(...any)
	Cleanup(func())
	TempDir() string
}) *RedisSentinel {
	tb.Helper()
	dir := tb.TempDir()
	s := &RedisSentinel{dir: dir}
	tb.Cleanup(s.Stop)
	ports, err := freePorts(3)
	if err != nil {
		tb.Fatal(err)
	}
	common := []string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning", "--dir", dir}
	if s.Primary, err = startNode(dir, ports[0], append([]string{"--port", strconv.Itoa(ports[0]), "--repl-diskless-sync-delay", "0"}, common...)...); err != nil {
		tb.Fatal(err)
	}
	if s.Replica, err = startNode(dir, ports[1], append([]string{"--port", strconv.Itoa(ports[1]), "--replicaof", "127.0.0.1", strconv.Itoa(ports[0])}, common...)...); err != nil {
		tb.Fatal(err)
	}
	// The sentinel learns of replicas from the primary's INFO, which it
	// reads at once and then every 10 s: start it once the replica is in.
	pc := redis.NewClient(&redis.Options{Addr: s.Primary.Addr(), MaxRetries: -1})
	defer pc.Close()
	for deadline := time.Now().Add(15 * time.Second); ; {
		info, err := pc.Info(context.Background(), "replication").Result()
		if err == nil && strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online") {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatal(fmt.Sprintf("replica did not attach: %v %v", info, err))
		}
		time.Sleep(20 * time.Millisecond)
	}
	conf := filepath.Join(dir, "sentinel.conf")
	text := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor primary 127.0.0.1 %d 1\n"+
		"sentinel down-after-milliseconds primary 1000\nsentinel failover-timeout primary 5000\n", ports[2], dir, ports[0])
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		tb.Fatal(err)
	}
	if s.Sentinel, err = startNode(dir, ports[2], conf, "--sentinel"); err != nil {
		tb.Fatal(err)
	}
	cl := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr(), MaxRetries: -1})
	defer cl.Close()
	for deadline := time.Now().Add(15 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		r, err := cl.Replicas(ctx, "primary").Result()
		cancel()
		if err == nil && len(r) == 1 {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatal(fmt.Sprintf("sentinel does not see the replica: %v %v", r, err))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

// URL returns a redis+sentinel:// URL of the primary, database 0.
func (s *RedisSentinel) URL() string {
	return "redis+sentinel://" + s.Sentinel.Addr() + "/primary"
}

// Stop kills the three processes.
func (s *RedisSentinel) Stop() {
	for _, n := range []*RedisNode{s.Sentinel, s.Replica, s.Primary} {
		if n != nil {
			n.Kill()
		}
	}
}
