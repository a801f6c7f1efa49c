package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"reflect"
	"sort"
	"strconv"
	"time"

	"github.com/knadh/koanf/v2"

	"github.com/wingman-app/wingate/host/auth"
	"github.com/wingman-app/wingate/host/cache"
	"github.com/wingman-app/wingate/host/server"
)

// ErrUsage marks an error in the configuration (a bad flag, variable or
// file): `wingate serve` exits 2 on it.
var ErrUsage = errors.New("usage")

// Config is everything the application is assembled from. Each field has a
// key in the configuration file and, where a Setting names them, a flag
// and an environment variable. Defaults returns the documented defaults;
// Load layers a file, the environment and flags over them.
type Config struct {
	// Addr is the public listen address (default 127.0.0.1:8080): the
	// API, /healthz, /readyz (status only) and the landing page.
	Addr string `koanf:"addr"`
	// OpsAddr is the operators' listen address: /metrics, /dashboard,
	// /admin and /readyz with details. Empty: derived from Addr (see
	// OpsAddrOf); "off": no operators' listener.
	OpsAddr string `koanf:"ops_addr"`
	// DatabaseURL is PostgreSQL's URL; empty: the in-memory demo store.
	// It may carry pgxpool's parameters (pool_max_conns, ...).
	DatabaseURL string `koanf:"database_url"`
	// RedisURL is the cache's Redis tier; empty: in-process cache only.
	RedisURL string `koanf:"redis_url"`
	// PolicyDir holds policies.json and the policy modules (default
	// ./policies).
	PolicyDir string `koanf:"policy_dir"`
	// PolicyStart is how the policies a start finds outside the
	// compilation cache are served: "tiered" (default), interpreted at
	// once and compiled in the background, each moved to its compiled
	// code when done (ready in a fraction of the compilation's time,
	// with slower decisions and the interpreter's heap, some 100 MiB per
	// module, until then); "compiled", compiled before the server is
	// ready (seconds of CPU per module).
	PolicyStart string `koanf:"policy_start"`
	// PolicyInitTimeout bounds each phase of a policy instance's
	// start-up (a start section, _initialize, wingate_init), with the
	// watchdog armed (zero: 500 ms, policy.DefaultInitTimeout). A
	// module that overruns one is refused; one the interpreter could not
	// start in time is started again on its compiled code.
	PolicyInitTimeout time.Duration `koanf:"policy_init_timeout"`
	// AdminToken guards /admin; empty disables the admin API. It is at
	// least MinAdminTokenLen bytes.
	AdminToken string `koanf:"admin_token"`
	// PolicyPubKey (base64 ed25519 public key, or a file holding it)
	// makes signed policy versions mandatory.
	PolicyPubKey string `koanf:"policy_pubkey"`
	// JWTSecret is the HS256 key of API tokens; empty: a random secret
	// per process, saved for `wingate token`.
	JWTSecret string `koanf:"jwt_secret"`
	// TokenMaxLifetime is the longest lifetime an API token may claim
	// (exp − iat, or exp − now without iat; default 24 h).
	TokenMaxLifetime time.Duration `koanf:"token_max_lifetime"`
	// LLMProvider is the provider of tiers that name none: simulated
	// (default), anthropic or openai.
	LLMProvider string `koanf:"llm_provider"`
	// LLMTiers is a tiers file; empty: the built-in tiers.
	LLMTiers string `koanf:"llm_tiers"`
	// LLMPassThrough is "on" to pass a gateway request for a model no
	// tier names to the default provider verbatim; "off" (default)
	// answers it 404 model_not_found.
	LLMPassThrough string `koanf:"llm_pass_through"`
	// LLMUser says what model providers are told of the end user in
	// their user field: "hash" (default), a keyed hash (HMAC-SHA256 with
	// LLMUserKey) of the caller's user id; "off", nothing.
	LLMUser string `koanf:"llm_user"`
	// LLMUserKey is that hash's key; empty: derived from JWTSecret (or,
	// without one, random per process).
	LLMUserKey string `koanf:"llm_user_key"`
	// KeysRedisDown is what the gateway does with calls on virtual keys
	// that have limits while Redis cannot be reached: "closed" (default)
	// refuses them (503 limits_unavailable), "local" lets each instance
	// enforce its KeysReplicas-th share of what was left.
	KeysRedisDown string `koanf:"keys_redis_down"`
	// KeysReplicas is how many instances share the keys' limits, for the
	// local mode's shares (default 1).
	KeysReplicas int `koanf:"keys_replicas"`
	// KeysRedisWait is how many replicas must have a key's reservation
	// (Redis WAIT, at most 50 ms) before the call goes ahead: 1 keeps the
	// reservations through a failover of a Sentinel or Cluster primary;
	// 0 (default) does not wait. Leave it 0 without replicas: WAIT would
	// time out on every call.
	KeysRedisWait int `koanf:"keys_redis_wait"`
	// LLMMaxIdleConns is how many idle connections to each model
	// provider are kept for reuse (default 64); set it to at least the
	// provider calls in flight at once.
	LLMMaxIdleConns int64 `koanf:"llm_max_idle_conns"`
	// SimLatency and SimTokenLatency are the simulated provider's delay
	// before the first token and per token (default 0).
	SimLatency      time.Duration `koanf:"llm_sim_latency"`
	SimTokenLatency time.Duration `koanf:"llm_sim_token_latency"`
	// Provider credentials and endpoints. The OpenAI key may be empty for
	// local OpenAI-compatible servers.
	AnthropicAPIKey  string `koanf:"anthropic_api_key"`
	AnthropicBaseURL string `koanf:"anthropic_base_url"`
	OpenAIAPIKey     string `koanf:"openai_api_key"`
	OpenAIBaseURL    string `koanf:"openai_base_url"`
	// LogLevel is debug, info (default), warn or error.
	LogLevel string `koanf:"log_level"`
	// AlertRules is the alert rules file (empty: the shipped rules);
	// AlertWebhook the URL alert changes are POSTed to.
	AlertRules   string `koanf:"alert_rules"`
	AlertWebhook string `koanf:"alert_webhook"`
	// CacheLocalBytes is the in-process cache tier's size (default 64
	// MiB); CacheMaxEntryBytes the largest response stored (256 KiB).
	CacheLocalBytes    int64 `koanf:"cache_local_bytes"`
	CacheMaxEntryBytes int64 `koanf:"cache_max_entry_bytes"`
	// DBAcquireTimeout and DBOpTimeout bound the wait for a database
	// connection and one operation (zero: pgstore's 1 s and 2 s).
	DBAcquireTimeout time.Duration `koanf:"db_acquire_timeout"`
	DBOpTimeout      time.Duration `koanf:"db_op_timeout"`
	// DrainDelay is how long /readyz answers 503 before the listener
	// closes on shutdown, so that a load balancer stops sending (default
	// 0); ShutdownTimeout bounds the wait for requests in flight (15 s;
	// zero takes that default).
	DrainDelay      time.Duration `koanf:"drain_delay"`
	ShutdownTimeout time.Duration `koanf:"shutdown_timeout"`
	// MaxOpenFiles is the soft descriptor limit (RLIMIT_NOFILE) set at
	// start (zero: raised to the hard limit; never above it).
	MaxOpenFiles int64 `koanf:"max_open_files"`
	// MaxConns caps the connections served at once (zero: derived from
	// the descriptor limit, see ConnCap); MaxConnsPerIP those from one
	// client address (zero: no cap, as behind a proxy).
	MaxConns      int64 `koanf:"max_conns"`
	MaxConnsPerIP int64 `koanf:"max_conns_per_ip"`
	// ListenBacklog is the public listener's accept queue (default
	// 512; zero: the system's net.core.somaxconn): how many connections
	// the kernel holds for the server to accept. A connection over the
	// cap waits its turn in it before it is refused, so the queue bounds
	// that wait: at the some 10,000 refusals a second two cores shared
	// with a flood allow, 512 queued is about 50 ms. When it is full
	// the kernel drops new SYNs, which the clients send again.
	ListenBacklog int64 `koanf:"listen_backlog"`
	// BodyLimit caps a request body on every route but the chat routes
	// (ChatBodyLimit, with a valid API token) and the admin upload (32
	// MiB, with the admin token); default 64 KiB and 1 MiB.
	BodyLimit     int64 `koanf:"body_limit"`
	ChatBodyLimit int64 `koanf:"chat_body_limit"`
	// ReadTimeout bounds the reading of one request (15 s),
	// WriteTimeout the writing of one answer (60 s), IdleTimeout a
	// keep-alive connection's wait for its next request (60 s),
	// StreamTimeout a server-sent event stream's lifetime (10 min).
	ReadTimeout   time.Duration `koanf:"read_timeout"`
	WriteTimeout  time.Duration `koanf:"write_timeout"`
	IdleTimeout   time.Duration `koanf:"idle_timeout"`
	StreamTimeout time.Duration `koanf:"stream_timeout"`
}

// Defaults returns the configuration used when nothing is set: in-memory
// store, in-process cache, simulated models, the policies in ./policies.
func Defaults() Config {
	return Config{
		Addr:               "127.0.0.1:8080",
		PolicyDir:          "./policies",
		PolicyStart:        "tiered",
		LLMProvider:        "simulated",
		LLMPassThrough:     "off",
		LLMMaxIdleConns:    64,
		LLMUser:            "hash",
		KeysRedisDown:      "closed",
		KeysReplicas:       1,
		LogLevel:           "info",
		CacheLocalBytes:    64 << 20,
		CacheMaxEntryBytes: 256 << 10,
		ShutdownTimeout:    15 * time.Second,
		ListenBacklog:      DefaultListenBacklog,
		BodyLimit:          server.DefaultBodyLimit,
		ChatBodyLimit:      server.DefaultChatBodyLimit,
		ReadTimeout:        server.DefaultConfig().ReadTimeout,
		WriteTimeout:       server.DefaultConfig().WriteTimeout,
		IdleTimeout:        server.DefaultIdleTimeout,
		StreamTimeout:      server.DefaultStreamTimeout,
		TokenMaxLifetime:   auth.DefaultMaxLifetime,
	}
}

// Setting describes one configuration key: its flag of `wingate serve`
// (empty: none), its environment variable and its help text.
type Setting struct {
	Key, Flag, Env, Usage string
}

// Settings lists every key of Config, in the order `wingate serve -h`
// documents them.
func Settings() []Setting { return settings }

var settings = []Setting{
	{"addr", "addr", "WINGATE_ADDR", "public listen address: API, /healthz, /readyz"},
	{"ops_addr", "ops-addr", "WINGATE_OPS_ADDR", "operators' listen address: /metrics, /dashboard, /admin, /readyz details; empty: 127.0.0.1 and the public port + 1; off: none"},
	{"database_url", "database-url", "DATABASE_URL", "PostgreSQL URL; empty: in-memory demo store"},
	{"redis_url", "redis-url", "REDIS_URL", "Redis URL: redis://host:port/db (one server), redis+cluster://host:port,... (Redis Cluster) or redis+sentinel://host:port,.../primary-name[/db] (Sentinel); empty: in-process cache only"},
	{"policy_dir", "policy-dir", "WINGATE_POLICY_DIR", "policy directory"},
	{"policy_init_timeout", "", "WINGATE_POLICY_INIT_TIMEOUT", "bound on each phase of a policy instance's start-up (start section, _initialize, wingate_init); 0: 500ms"},
	{"policy_start", "", "WINGATE_POLICY_START", "tiered: policies not in the compilation cache are served interpreted at once and compiled in the background; compiled: compiled before ready"},
	{"admin_token", "admin-token", "WINGATE_ADMIN_TOKEN", "bearer token for /admin, at least 32 bytes (openssl rand -hex 32); empty disables it"},
	{"policy_pubkey", "policy-pubkey", "WINGATE_POLICY_PUBKEY", "ed25519 public key (base64 or file) required to sign policy versions; empty: unsigned accepted"},
	{"jwt_secret", "jwt-secret", "WINGATE_JWT_SECRET", "HS256 key for API tokens; empty: random per process"},
	{"token_max_lifetime", "token-max-lifetime", "WINGATE_TOKEN_MAX_LIFETIME", "longest lifetime an API token may claim (exp - iat)"},
	{"llm_provider", "llm-provider", "WINGATE_LLM_PROVIDER", "simulated, anthropic or openai"},
	{"alert_rules", "alert-rules", "WINGATE_ALERT_RULES", "alert rules file; empty: the shipped rules"},
	{"alert_webhook", "alert-webhook", "WINGATE_ALERT_WEBHOOK", "URL alert changes are POSTed to as JSON; empty: log and dashboard only"},
	{"log_level", "log-level", "WINGATE_LOG_LEVEL", "debug, info, warn or error"},
	{"cache_local_bytes", "cache-local-bytes", "WINGATE_CACHE_LOCAL_BYTES", "size of the in-process cache tier in bytes"},
	{"cache_max_entry_bytes", "cache-max-entry-bytes", "WINGATE_CACHE_MAX_ENTRY_BYTES", "largest response body the cache stores, in bytes"},
	{"llm_tiers", "", "WINGATE_LLM_TIERS", "LLM tiers file; empty: the built-in tiers"},
	{"llm_pass_through", "", "WINGATE_LLM_PASS_THROUGH", "on: pass /v1 requests for models no tier names to the default provider; off: 404 model_not_found"},
	{"llm_user", "", "WINGATE_LLM_USER", "what model providers are told of the end user: hash (a keyed hash of the user id) or off (nothing)"},
	{"llm_user_key", "", "WINGATE_LLM_USER_KEY", "key of the user hash sent to model providers; empty: derived from the JWT secret"},
	{"keys_redis_down", "", "WINGATE_KEYS_REDIS_DOWN", "calls on virtual keys with limits while Redis is unreachable: closed (refused) or local (each instance enforces its share)"},
	{"keys_replicas", "", "WINGATE_KEYS_REPLICAS", "instances sharing the virtual keys' limits: each takes this share of them in the local mode"},
	{"keys_redis_wait", "", "WINGATE_KEYS_REDIS_WAIT", "replicas that must hold a virtual key's reservation (Redis WAIT, at most 50 ms) before the call goes ahead; 0: no wait"},
	{"llm_max_idle_conns", "", "WINGATE_LLM_MAX_IDLE_CONNS", "idle connections kept per model provider for reuse"},
	{"llm_sim_latency", "", "WINGATE_LLM_SIM_LATENCY", "simulated provider's delay before the first token"},
	{"llm_sim_token_latency", "", "WINGATE_LLM_SIM_TOKEN_LATENCY", "simulated provider's delay per token"},
	{"anthropic_api_key", "", "ANTHROPIC_API_KEY", "Anthropic API key"},
	{"anthropic_base_url", "", "ANTHROPIC_BASE_URL", "Anthropic API base URL"},
	{"openai_api_key", "", "OPENAI_API_KEY", "OpenAI(-compatible) API key"},
	{"openai_base_url", "", "OPENAI_BASE_URL", "OpenAI-compatible API base URL"},
	{"db_acquire_timeout", "", "WINGATE_DB_ACQUIRE_TIMEOUT", "wait for a database connection"},
	{"db_op_timeout", "", "WINGATE_DB_OP_TIMEOUT", "bound on one database operation"},
	{"drain_delay", "", "WINGATE_DRAIN_DELAY", "how long /readyz fails before the listener closes on shutdown"},
	{"shutdown_timeout", "", "WINGATE_SHUTDOWN_TIMEOUT", "wait for requests in flight on shutdown"},
	{"max_open_files", "max-open-files", "WINGATE_MAX_OPEN_FILES", "soft descriptor limit set at start; 0: the hard limit"},
	{"max_conns", "max-conns", "WINGATE_MAX_CONNS", "connections served at once; 0: derived from the descriptor limit"},
	{"max_conns_per_ip", "max-conns-per-ip", "WINGATE_MAX_CONNS_PER_IP", "connections served at once from one client address; 0: no cap"},
	{"listen_backlog", "listen-backlog", "WINGATE_LISTEN_BACKLOG", "the public listener's accept queue; 0: the system's somaxconn"},
	{"body_limit", "body-limit", "WINGATE_BODY_LIMIT", "largest request body in bytes (chat routes and the admin upload have their own)"},
	{"chat_body_limit", "", "WINGATE_CHAT_BODY_LIMIT", "largest chat message or completion body in bytes, with a valid API token"},
	{"read_timeout", "", "WINGATE_READ_TIMEOUT", "bound on reading one request"},
	{"write_timeout", "", "WINGATE_WRITE_TIMEOUT", "bound on writing one answer"},
	{"idle_timeout", "", "WINGATE_IDLE_TIMEOUT", "how long a keep-alive connection waits for its next request"},
	{"stream_timeout", "", "WINGATE_STREAM_TIMEOUT", "longest server-sent event stream"},
}

// ConfigFileEnv names the configuration file when no --config flag does.
const ConfigFileEnv = "WINGATE_CONFIG"

// mapProvider feeds one layer of keys to koanf.
type mapProvider map[string]any

func (m mapProvider) ReadBytes() ([]byte, error) {
	return nil, errors.New("mapProvider: ReadBytes unsupported")
}
func (m mapProvider) Read() (map[string]any, error) { return m, nil }

func settingOf(key string) (Setting, bool) {
	for _, s := range settings {
		if s.Key == key {
			return s, true
		}
	}
	return Setting{}, false
}

// Load layers the configuration: Defaults, then the JSON file at path
// (when not empty; an object of keys as in Settings, durations as
// strings like "2s"), then the environment variables read by getenv (an
// empty variable counts as unset), then flags (key → value, only the
// flags given on the command line). A later layer wins; an unknown key in
// the file or a value of the wrong type is an ErrUsage naming its flag or
// variable.
func Load(path string, getenv func(string) string, flags map[string]string) (Config, error) {
	k := koanf.New("::")
	def, err := toMap(Defaults())
	if err != nil {
		return Config{}, err
	}
	if err := k.Load(mapProvider(def), nil); err != nil {
		return Config{}, err
	}
	if path != "" {
		m, err := readFile(path)
		if err != nil {
			return Config{}, err
		}
		if err := k.Load(mapProvider(m), nil); err != nil {
			return Config{}, err
		}
	}
	if getenv != nil {
		env := map[string]any{}
		for _, s := range settings {
			if v := getenv(s.Env); v != "" {
				env[s.Key] = v
			}
		}
		if err := k.Load(mapProvider(env), nil); err != nil {
			return Config{}, err
		}
	}
	fl := map[string]any{}
	for key, v := range flags {
		if _, ok := settingOf(key); !ok {
			return Config{}, fmt.Errorf("%w: unknown setting %q", ErrUsage, key)
		}
		fl[key] = v
	}
	if err := k.Load(mapProvider(fl), nil); err != nil {
		return Config{}, err
	}
	var c Config
	// Decode key by key so that an error names the setting at fault.
	for _, key := range k.Keys() {
		if err := k.UnmarshalWithConf(key, fieldOf(&c, key), koanf.UnmarshalConf{Tag: "koanf"}); err != nil {
			s, _ := settingOf(key)
			return Config{}, fmt.Errorf("%w: %s: %q: %v", ErrUsage, describe(s), k.String(key), err)
		}
	}
	return c, c.Validate()
}

// describe names where a setting comes from, for error messages.
func describe(s Setting) string {
	if s.Flag != "" {
		return fmt.Sprintf("%s (--%s, %s)", s.Key, s.Flag, s.Env)
	}
	return fmt.Sprintf("%s (%s)", s.Key, s.Env)
}

func readFile(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: config file: %w", ErrUsage, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: config file %s: not a JSON object: %v", ErrUsage, path, err)
	}
	var unknown []string
	for key, v := range m {
		if _, ok := settingOf(key); !ok {
			unknown = append(unknown, key)
		}
		if _, nested := v.(map[string]any); nested {
			return nil, fmt.Errorf("%w: config file %s: %q: want a value, not an object", ErrUsage, path, key)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, fmt.Errorf("%w: config file %s: unknown keys %q", ErrUsage, path, unknown)
	}
	return m, nil
}

// Validate reports settings out of range.
func (c Config) Validate() error {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return fmt.Errorf("%w: log level %q: want debug, info, warn or error", ErrUsage, c.LogLevel)
	}
	switch {
	case c.CacheLocalBytes < 0 || c.CacheMaxEntryBytes < 0:
		return fmt.Errorf("%w: cache sizes must be positive", ErrUsage)
	case c.LLMPassThrough != "on" && c.LLMPassThrough != "off":
		return fmt.Errorf("%w: llm_pass_through (WINGATE_LLM_PASS_THROUGH) %q: want on or off", ErrUsage, c.LLMPassThrough)
	case c.PolicyInitTimeout < 0 || c.PolicyInitTimeout > time.Minute:
		return fmt.Errorf("%w: the policy start-up timeout must be from 0 (the default) to 1m", ErrUsage)
	case c.PolicyStart != "tiered" && c.PolicyStart != "compiled":
		return fmt.Errorf("%w: policy_start (WINGATE_POLICY_START) %q: want tiered or compiled", ErrUsage, c.PolicyStart)
	case c.LLMUser != "hash" && c.LLMUser != "off":
		return fmt.Errorf("%w: llm_user (WINGATE_LLM_USER) %q: want hash or off", ErrUsage, c.LLMUser)
	case c.KeysRedisDown != "closed" && c.KeysRedisDown != "local":
		return fmt.Errorf("%w: keys_redis_down (WINGATE_KEYS_REDIS_DOWN) %q: want closed or local", ErrUsage, c.KeysRedisDown)
	case c.KeysRedisWait < 0 || c.KeysRedisWait > 10:
		return fmt.Errorf("%w: keys_redis_wait (WINGATE_KEYS_REDIS_WAIT) %d: want 0 to 10", ErrUsage, c.KeysRedisWait)
	case c.KeysReplicas < 1 || c.KeysReplicas > 1000:
		return fmt.Errorf("%w: keys_replicas (WINGATE_KEYS_REPLICAS) %d: want 1 to 1000", ErrUsage, c.KeysReplicas)
	case c.LLMMaxIdleConns < 1 || c.LLMMaxIdleConns > 1<<16:
		return fmt.Errorf("%w: llm_max_idle_conns (WINGATE_LLM_MAX_IDLE_CONNS) %d: want 1 to 65536", ErrUsage, c.LLMMaxIdleConns)
	case c.SimLatency < 0 || c.SimTokenLatency < 0:
		return fmt.Errorf("%w: simulated latencies must not be negative", ErrUsage)
	case c.DBAcquireTimeout < 0 || c.DBOpTimeout < 0:
		return fmt.Errorf("%w: database timeouts must be positive", ErrUsage)
	case c.DrainDelay < 0 || c.ShutdownTimeout < 0:
		return fmt.Errorf("%w: drain delay and shutdown timeout must not be negative", ErrUsage)
	case c.MaxOpenFiles < 0 || c.MaxConns < 0 || c.MaxConnsPerIP < 0 || c.ListenBacklog < 0 || c.ListenBacklog > 1<<20:
		return fmt.Errorf("%w: connection and descriptor limits must not be negative", ErrUsage)
	case c.BodyLimit <= 0 || c.BodyLimit > 1<<30 || c.ChatBodyLimit < 0 || c.ChatBodyLimit > 1<<30:
		return fmt.Errorf("%w: body limits must be from 1 byte to 1 GiB", ErrUsage)
	case c.ReadTimeout <= 0 || c.WriteTimeout <= 0 || c.IdleTimeout <= 0 || c.StreamTimeout <= 0:
		return fmt.Errorf("%w: read, write, idle and stream timeouts must be positive", ErrUsage)
	case c.TokenMaxLifetime <= 0:
		return fmt.Errorf("%w: token_max_lifetime (--token-max-lifetime, WINGATE_TOKEN_MAX_LIFETIME) must be positive", ErrUsage)
	case c.AdminToken != "" && len(c.AdminToken) < MinAdminTokenLen:
		return fmt.Errorf("%w: admin_token (--admin-token, WINGATE_ADMIN_TOKEN) is %d bytes, want at least %d (e.g. openssl rand -hex 32)", ErrUsage, len(c.AdminToken), MinAdminTokenLen)
	}
	if _, _, err := OpsAddrOf(c); err != nil {
		return err
	}
	if c.RedisURL != "" {
		if _, _, err := cache.ParseRedisURL(c.RedisURL); err != nil {
			return fmt.Errorf("%w: REDIS_URL: %v", ErrUsage, err)
		}
	}
	return nil
}

// MinAdminTokenLen is the shortest admin token serve starts with, in
// bytes: the admin API moves the policies every request runs.
const MinAdminTokenLen = 32

// OpsOff is the OpsAddr that turns the operators' listener off.
const OpsOff = "off"

// OpsAddrOf returns the operators' listen address of c, and false when
// the listener is off. An empty OpsAddr is derived from Addr: the
// loopback address 127.0.0.1 and Addr's port + 1 (8081 beside the
// default 8080), or port 0 (any free port) when Addr's port is 0.
func OpsAddrOf(c Config) (string, bool, error) {
	switch c.OpsAddr {
	case OpsOff:
		return "", false, nil
	case "":
	default:
		if _, _, err := net.SplitHostPort(c.OpsAddr); err != nil {
			return "", false, fmt.Errorf("%w: ops_addr (--ops-addr, WINGATE_OPS_ADDR) %q: want host:port or %q", ErrUsage, c.OpsAddr, OpsOff)
		}
		return c.OpsAddr, true, nil
	}
	_, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return "", false, fmt.Errorf("%w: addr (--addr, WINGATE_ADDR) %q: want host:port", ErrUsage, c.Addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65534 {
		return "", false, fmt.Errorf("%w: addr (--addr, WINGATE_ADDR) %q: the operators' port is derived as its port + 1; set ops_addr (--ops-addr, WINGATE_OPS_ADDR)", ErrUsage, c.Addr)
	}
	if p > 0 {
		p++
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), true, nil
}

// fieldOf returns a pointer to c's field tagged key.
func fieldOf(c *Config, key string) any {
	v := reflect.ValueOf(c).Elem()
	t := v.Type()
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("koanf") == key {
			return v.Field(i).Addr().Interface()
		}
	}
	panic("app: no Config field for setting " + key)
}

// toMap returns c's fields by key.
func toMap(c Config) (map[string]any, error) {
	v := reflect.ValueOf(c)
	t := v.Type()
	m := make(map[string]any, t.NumField())
	for i := range t.NumField() {
		key := t.Field(i).Tag.Get("koanf")
		if _, ok := settingOf(key); !ok {
			return nil, fmt.Errorf("app: Config field %s has no setting", t.Field(i).Name)
		}
		m[key] = v.Field(i).Interface()
	}
	return m, nil
}

// Value returns c's value of the setting key (string, int64 or
// time.Duration).
func Value(c Config, key string) any { return reflect.ValueOf(fieldOf(&c, key)).Elem().Interface() }

// KeyOfFlag returns the key of the setting whose flag is name.
func KeyOfFlag(name string) (string, bool) {
	for _, s := range settings {
		if s.Flag != "" && s.Flag == name {
			return s.Key, true
		}
	}
	return "", false
}
