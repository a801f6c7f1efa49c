package cache

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisServer is a redis-server child process owned by one test, so that a
// test can kill and restart it without touching anyone else's Redis.
type redisServer struct {
	t    testing.TB
	port int
	cmd  *exec.Cmd
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func redisBinary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("redis-server")
	if err != nil {
		if _, serr := os.Stat("/usr/bin/redis-server"); serr == nil {
			return "/usr/bin/redis-server"
		}
		t.Fatalf("redis-server is not installed: %v", err)
	}
	return p
}

// startRedis starts a private redis-server on a free port.
func startRedis(t testing.TB) *redisServer {
	t.Helper()
	s := &redisServer{t: t, port: freePort(t)}
	s.start()
	t.Cleanup(s.stop)
	return s
}

func (s *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

func (s *redisServer) url() string { return "redis://" + s.addr() + "/0" }

func (s *redisServer) start() {
	s.t.Helper()
	s.cmd = exec.Command(redisBinary(s.t), "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning")
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	cl := redis.NewClient(&redis.Options{Addr: s.addr(), MaxRetries: -1})
	defer cl.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := cl.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s did not answer: %v", s.addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill ends the server abruptly, as a crash would.
func (s *redisServer) kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

func (s *redisServer) stop() { s.kill() }

// client returns a go-redis client with the cache's short timeouts.
func (s *redisServer) client(t testing.TB) redis.UniversalClient {
	t.Helper()
	opt, err := RedisOptions(s.url(), 0)
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
