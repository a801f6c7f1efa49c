package cache

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisMode is how a Redis URL reaches Redis.
type RedisMode string

// The three deployments a Redis URL can name.
const (
	RedisSingle   RedisMode = "single"   // one server: redis:// or rediss://
	RedisCluster  RedisMode = "cluster"  // Redis Cluster: redis+cluster://
	RedisSentinel RedisMode = "sentinel" // a primary found through Sentinel: redis+sentinel://
)

// MaxRedisURLHosts bounds the addresses a cluster or sentinel URL may list.
const MaxRedisURLHosts = 64

// errRedisURL marks every error of ParseRedisURL.
var errRedisURL = errors.New("cache: bad Redis URL")

// OpenRedis parses rawURL (see ParseRedisURL) and returns a client with
// the short timeouts the cache's breaker relies on (timeout bounds reads,
// writes and pool waits; 50 ms when zero), no retries and one dial
// attempt. It does not connect.
func OpenRedis(rawURL string, timeout time.Duration) (redis.UniversalClient, RedisMode, error) {
	if mode, _, _ := splitScheme(rawURL); mode == RedisSingle {
		opt, err := RedisOptions(rawURL, timeout)
		if err != nil {
			return nil, "", err
		}
		return redis.NewClient(opt), RedisSingle, nil
	}
	opt, mode, err := ParseRedisURL(rawURL)
	if err != nil {
		return nil, "", err
	}
	setTimeouts(opt, timeout)
	return redis.NewUniversalClient(opt), mode, nil
}

func setTimeouts(opt *redis.UniversalOptions, timeout time.Duration) {
	if timeout <= 0 {
		timeout = 50 * time.Millisecond
	}
	opt.DialTimeout = 4 * timeout
	opt.DialerRetries = 1
	opt.ReadTimeout = timeout
	opt.WriteTimeout = timeout
	opt.PoolTimeout = timeout
	opt.MaxRetries = -1
	opt.ContextTimeoutEnabled = true
}

// ParseRedisURL reads a Redis URL into go-redis's universal options:
//
//	redis://[user:password@]host:port[/db]            one server (rediss:// for TLS)
//	redis+cluster://[user:password@]h1:p1,h2:p2,...    Redis Cluster, any of its nodes (rediss+cluster:// for TLS)
//	redis+sentinel://[user:password@]s1:p1,s2:p2,.../primary[/db]
//	                                                   the primary named primary, found through the sentinels (rediss+sentinel:// for TLS)
//
// The user and password authenticate to the data nodes (for Sentinel: the
// primary and its replicas, not the sentinels). Cluster and sentinel URLs
// take no query options and at most MaxRedisURLHosts addresses; a cluster
// URL names no database but 0. A one-server URL is go-redis's own format,
// with its query options (the options returned here carry its address,
// database, credentials and TLS; OpenRedis keeps every option). No error
// message contains the password.
func ParseRedisURL(rawURL string) (*redis.UniversalOptions, RedisMode, error) {
	mode, tlsOn, rest := splitScheme(rawURL)
	if mode == "" {
		return nil, "", fmt.Errorf("%w: scheme must be redis, rediss, redis+cluster, rediss+cluster, redis+sentinel or rediss+sentinel", errRedisURL)
	}
	if mode == RedisSingle {
		opt, err := parseSingleURL(rawURL)
		if err != nil {
			return nil, "", err
		}
		return &redis.UniversalOptions{Addrs: []string{opt.Addr}, DB: opt.DB, Username: opt.Username,
			Password: opt.Password, TLSConfig: opt.TLSConfig, Protocol: opt.Protocol, ClientName: opt.ClientName}, mode, nil
	}
	if strings.ContainsAny(rest, "?#") {
		return nil, "", fmt.Errorf("%w: %s URLs take no query options or fragment", errRedisURL, mode)
	}
	authority, path, _ := strings.Cut(rest, "/")
	opt := &redis.UniversalOptions{}
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		// As in go-redis's own URLs: user:password, :password or user.
		user, pass, _ := strings.Cut(authority[:at], ":")
		var err1, err2 error
		opt.Username, err1 = url.PathUnescape(user)
		opt.Password, err2 = url.PathUnescape(pass)
		if err1 != nil || err2 != nil {
			return nil, "", fmt.Errorf("%w: bad escape in the user or password", errRedisURL)
		}
		authority = authority[at+1:]
	}
	hosts := strings.Split(authority, ",")
	if len(hosts) > MaxRedisURLHosts {
		return nil, "", fmt.Errorf("%w: more than %d addresses", errRedisURL, MaxRedisURLHosts)
	}
	for i, h := range hosts {
		if err := checkHostPort(h); err != nil {
			return nil, "", fmt.Errorf("%w: address %d: %v", errRedisURL, i+1, err)
		}
	}
	opt.Addrs = hosts
	if tlsOn {
		// No ServerName: crypto/tls takes it from each node's address.
		opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	switch mode {
	case RedisCluster:
		if path != "" && path != "0" {
			return nil, "", fmt.Errorf("%w: a cluster has only database 0", errRedisURL)
		}
		opt.IsClusterMode = true
	case RedisSentinel:
		name, db, hasDB := strings.Cut(path, "/")
		var err error
		if opt.MasterName, err = url.PathUnescape(name); err != nil || opt.MasterName == "" {
			return nil, "", fmt.Errorf("%w: a sentinel URL needs the primary's name as its path: redis+sentinel://host:port,.../name[/db]", errRedisURL)
		}
		if hasDB {
			n, err := strconv.Atoi(db)
			if err != nil || n < 0 || n > 1<<20 || strconv.Itoa(n) != db {
				return nil, "", fmt.Errorf("%w: database must be a number", errRedisURL)
			}
			opt.DB = n
		}
	}
	return opt, mode, nil
}

// parseSingleURL is redis.ParseURL with errors that do not repeat the URL
// or its password.
func parseSingleURL(rawURL string) (*redis.Options, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return nil, fmt.Errorf("%w: %s", errRedisURL, scrubPassword(err.Error(), rawURL))
	}
	return opt, nil
}

// splitScheme returns the mode a URL's scheme names ("" for none known),
// whether it asks for TLS and what follows "://".
func splitScheme(rawURL string) (mode RedisMode, tlsOn bool, rest string) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return "", false, ""
	}
	switch strings.ToLower(scheme) {
	case "redis":
		return RedisSingle, false, rest
	case "rediss":
		return RedisSingle, true, rest
	case "redis+cluster":
		return RedisCluster, false, rest
	case "rediss+cluster":
		return RedisCluster, true, rest
	case "redis+sentinel":
		return RedisSentinel, false, rest
	case "rediss+sentinel":
		return RedisSentinel, true, rest
	}
	return "", false, ""
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return errors.New("want host:port")
	}
	if strings.ContainsAny(host, "/@ \t") {
		return errors.New("bad host")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != port {
		return errors.New("bad port")
	}
	return nil
}

// scrubPassword replaces the password of rawURL, as written and
// unescaped, in msg.
func scrubPassword(msg, rawURL string) string {
	_, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return msg
	}
	authority, _, _ := strings.Cut(rest, "/")
	at := strings.LastIndexByte(authority, '@')
	if at < 0 {
		return msg
	}
	userinfo := authority[:at]
	secrets := []string{userinfo}
	if _, pass, ok := strings.Cut(userinfo, ":"); ok {
		secrets = append(secrets, pass)
	}
	for _, s := range secrets {
		if u, err := url.PathUnescape(s); err == nil && u != s {
			secrets = append(secrets, u)
		}
	}
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	return msg
}
