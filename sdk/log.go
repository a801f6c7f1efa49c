package sdk

// Log levels, as slog levels: the host logs at the same level.
const (
	levelDebug = -4
	levelInfo  = 0
	levelWarn  = 4
	levelError = 8
)

// LogDebug logs msg at debug level in the host's log, tagged with the policy.
func LogDebug(msg string) { logMessage(levelDebug, msg) }

// LogInfo logs msg at info level in the host's log, tagged with the policy.
func LogInfo(msg string) { logMessage(levelInfo, msg) }

// LogWarn logs msg at warn level in the host's log, tagged with the policy.
func LogWarn(msg string) { logMessage(levelWarn, msg) }

// LogError logs msg at error level in the host's log, tagged with the policy.
func LogError(msg string) { logMessage(levelError, msg) }
