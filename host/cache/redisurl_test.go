package cache

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseRedisURL(t *testing.T) {
	tests := []struct {
		url        string
		mode       RedisMode
		addrs      []string
		user, pass string
		master     string
		db         int
		tls        bool
	}{
		{"redis://127.0.0.1:6379/0", RedisSingle, []string{"127.0.0.1:6379"}, "", "", "", 0, false},
		{"rediss://u:p@h:6380/3", RedisSingle, []string{"h:6380"}, "u", "p", "", 3, true},
		{"redis+cluster://h1:7000,h2:7001,h3:7002", RedisCluster, []string{"h1:7000", "h2:7001", "h3:7002"}, "", "", "", 0, false},
		{"redis+cluster://h1:7000/", RedisCluster, []string{"h1:7000"}, "", "", "", 0, false},
		{"REDISS+CLUSTER://app:s%40cret@h1:7000,[::1]:7001/0", RedisCluster, []string{"h1:7000", "[::1]:7001"}, "app", "s@cret", "", 0, true},
		{"redis+cluster://onlyuser@h1:7000", RedisCluster, []string{"h1:7000"}, "onlyuser", "", "", 0, false},
		{"redis+cluster://:onlypass@h1:7000", RedisCluster, []string{"h1:7000"}, "", "onlypass", "", 0, false},
		{"redis+sentinel://s1:26379,s2:26379/mymaster", RedisSentinel, []string{"s1:26379", "s2:26379"}, "", "", "mymaster", 0, false},
		{"rediss+sentinel://:pw@s1:26379/my%20master/2", RedisSentinel, []string{"s1:26379"}, "", "pw", "my master", 2, true},
	}
	for _, tt := range tests {
		opt, mode, err := ParseRedisURL(tt.url)
		if err != nil {
			t.Fatalf("%s: %v", tt.url, err)
		}
		if mode != tt.mode || !slices.Equal(opt.Addrs, tt.addrs) || opt.Username != tt.user || opt.Password != tt.pass ||
			opt.MasterName != tt.master || opt.DB != tt.db || (opt.TLSConfig != nil) != tt.tls ||
			opt.IsClusterMode != (tt.mode == RedisCluster) {
			t.Fatalf("%s: mode %v, %+v", tt.url, mode, opt)
		}
	}
}

// TestParseRedisURLErrors: every bad URL is an error that says what is
// wrong and never repeats the password.
func TestParseRedisURLErrors(t *testing.T) {
	const secret = "hunter2-secret"
	tests := []struct{ url, want string }{
		{"", "scheme"},
		{"http://h:1", "scheme"},
		{"redis+ring://h:1", "scheme"},
		{"redis+cluster://u:" + secret + "@", "address 1"},
		{"redis+cluster://u:" + secret + "@h1:7000,", "address 2"},
		{"redis+cluster://u:" + secret + "@h1:7000,h2", "address 2"},
		{"redis+cluster://u:" + secret + "@h1:99999", "bad port"},
		{"redis+cluster://u:" + secret + "@h1:+1", "bad port"},
		{"redis+cluster://u:" + secret + "@h1:7000/1", "database 0"},
		{"redis+cluster://u:" + secret + "@h1:7000?read_timeout=1s", "query"},
		{"redis+cluster://u:" + secret + "%zz@h1:7000", "escape"},
		{"redis+sentinel://u:" + secret + "@s1:26379", "primary's name"},
		{"redis+sentinel://u:" + secret + "@s1:26379/", "primary's name"},
		{"redis+sentinel://u:" + secret + "@s1:26379/m/x", "database"},
		{"redis+sentinel://u:" + secret + "@s1:26379/m/-1", "database"},
		{"redis+cluster://u:" + secret + "@" + strings.Repeat("h:1,", MaxRedisURLHosts) + "h:1", "more than"},
		{"redis://u:" + secret + "@h:x/0", "port"},
		{"redis://u:" + secret + "@h:6379/db", "database"},
		{"redis://:" + secret + "@h:6379/0?nosuch=1", "unexpected option"},
		{"redis://u:" + secret + "%zz@h:6379/0", ""},
	}
	for _, tt := range tests {
		_, _, err := ParseRedisURL(tt.url)
		if err == nil || !errors.Is(err, errRedisURL) {
			t.Fatalf("%q: err %v, want a bad Redis URL", tt.url, err)
		}
		if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), secret) {
			t.Fatalf("%q: %q, want %q and no password", tt.url, err, tt.want)
		}
		if _, _, err2 := OpenRedis(tt.url, 0); err2 == nil || strings.Contains(err2.Error(), secret) {
			t.Fatalf("OpenRedis(%q): %v", tt.url, err2)
		}
	}
}

// FuzzParseRedisURL: no URL panics the parser, a URL it accepts has
// between one and MaxRedisURLHosts addresses, and no error repeats the
// password.
func FuzzParseRedisURL(f *testing.F) {
	for _, s := range []string{"redis://h:1/0", "redis+cluster://a:b@h1:1,h2:2", "redis+sentinel://s:1/m/0",
		"rediss+sentinel://u:p@s:1,t:2/m", "redis+cluster://u:p%zz@h:1", "redis://:pw@h:1/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		opt, mode, err := ParseRedisURL(raw)
		if err != nil {
			if !errors.Is(err, errRedisURL) {
				t.Fatalf("%q: untyped error %v", raw, err)
			}
			if _, rest, ok := strings.Cut(raw, "://"); ok {
				authority, _, _ := strings.Cut(rest, "/")
				if at := strings.LastIndexByte(authority, '@'); at >= 0 {
					if _, pass, ok := strings.Cut(authority[:at], ":"); ok && len(pass) >= 6 && strings.Contains(err.Error(), pass) {
						t.Fatalf("%q: error %q repeats the password", raw, err)
					}
				}
			}
			return
		}
		if len(opt.Addrs) < 1 || len(opt.Addrs) > MaxRedisURLHosts {
			t.Fatalf("%q: %d addresses", raw, len(opt.Addrs))
		}
		if mode == RedisSentinel && opt.MasterName == "" {
			t.Fatalf("%q: sentinel without a primary name", raw)
		}
	})
}
