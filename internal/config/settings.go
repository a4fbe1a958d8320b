package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// EnvPrefix prefixes environment overrides: import.batch_size is
// MASFLOW_IMPORT_BATCH_SIZE.
const EnvPrefix = "MASFLOW"

// Settings are masflow's own settings.
type Settings struct {
	Synapse    SynapseSettings    `mapstructure:"synapse"`
	MAS        MASSettings        `mapstructure:"mas"`
	Import     ImportSettings     `mapstructure:"import"`
	Homeserver HomeserverSettings `mapstructure:"homeserver"`
	Worker     WorkerSettings     `mapstructure:"worker"`
}

// HomeserverSettings choose how Synapse is controlled.
type HomeserverSettings struct {
	// Controller is "none": masflow only verifies each step the operator
	// performs (systemd, compose, Kubernetes and process controllers come
	// in later releases).
	Controller string `mapstructure:"controller"`
}

// WorkerSettings tune the worker process.
type WorkerSettings struct {
	// HostTaskQueue, when set, sends homeserver steps to a worker on the
	// Synapse host polling that queue.
	HostTaskQueue string `mapstructure:"host_task_queue"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `mapstructure:"log_level"`
	// MetricsAddress, when set (e.g. 0.0.0.0:9464), serves Prometheus
	// metrics on /metrics.
	MetricsAddress string `mapstructure:"metrics_address"`
}

// SynapseSettings say where Synapse's configuration is.
type SynapseSettings struct {
	// Config lists the files/directories Synapse is started with (-c).
	Config []string `mapstructure:"config"`
}

// MASSettings say where MAS's configuration is.
type MASSettings struct {
	Config []string `mapstructure:"config"`
}

// ImportSettings tune the import.
type ImportSettings struct {
	// BatchSize is the rows per read page and per write transaction.
	BatchSize int `mapstructure:"batch_size"`
	// Parallelism is how many shards import at once.
	Parallelism int `mapstructure:"parallelism"`
	// ShardsPerEntity splits each entity's key range (default Parallelism).
	ShardsPerEntity int `mapstructure:"shards_per_entity"`
	// Strict aborts on the first inconsistent source row.
	Strict bool `mapstructure:"strict"`
	// IgnoreMissingProviders skips SSO links of unmapped providers.
	IgnoreMissingProviders bool `mapstructure:"ignore_missing_providers"`
	// SaltFile, when set, holds the salt of the deterministic IDs (at
	// least 16 bytes); otherwise a random salt is drawn when the run
	// starts. Either way it is stored with the run in the MAS database.
	SaltFile string `mapstructure:"salt_file"`
	// HeartbeatSeconds: an import call whose worker stops heartbeating this
	// long (it died) is retried on another worker.
	HeartbeatSeconds int `mapstructure:"heartbeat_seconds"`
	// ReportDir receives the findings report (CSV of every skipped or
	// noted row) when the migration finishes, before masflow's
	// bookkeeping is dropped from the MAS database.
	ReportDir string `mapstructure:"report_dir"`
}

// defaults are every key with its default; viper needs each key known to
// apply environment overrides when unmarshalling.
var defaults = map[string]any{
	"synapse.config":                  []string{"/etc/matrix-synapse/homeserver.yaml"},
	"mas.config":                      []string{"/etc/mas/config.yaml"},
	"import.batch_size":               5000,
	"import.parallelism":              4,
	"import.shards_per_entity":        0,
	"import.strict":                   false,
	"import.ignore_missing_providers": false,
	"import.salt_file":                "",
	"import.report_dir":               ".",
	"import.heartbeat_seconds":        60,
	"homeserver.controller":           "none",
	"worker.host_task_queue":          "",
	"worker.log_level":                "info",
	"worker.metrics_address":          "",
}

// LoadSettings reads masflow's settings: defaults, then the file (if
// any), then MASFLOW_* environment variables, then flags bound in fs (may
// be nil). Unknown keys and out-of-range values are errors naming them.
func LoadSettings(file string, fs *pflag.FlagSet) (Settings, error) {
	v := viper.New()
	for k, d := range defaults {
		v.SetDefault(k, d)
	}
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()
	where := "defaults and " + EnvPrefix + "_* environment"
	if file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			return Settings{}, fmt.Errorf("reading masflow settings %s: %w", file, err)
		}
		where = file
	}
	if fs != nil {
		// Only flags named after settings keys (AddSettingsFlags).
		var bindErr error
		fs.VisitAll(func(f *pflag.Flag) {
			if _, known := defaults[f.Name]; known && bindErr == nil {
				bindErr = v.BindPFlag(f.Name, f)
			}
		})
		if bindErr != nil {
			return Settings{}, bindErr
		}
	}
	var s Settings
	if err := v.UnmarshalExact(&s); err != nil {
		return Settings{}, fmt.Errorf("%s: %w (see deployments/masflow.example.yaml for the keys)", where, err)
	}
	if s.Import.ShardsPerEntity == 0 {
		s.Import.ShardsPerEntity = s.Import.Parallelism
	}
	return s, s.validate(where)
}

// AddSettingsFlags registers a flag per settings key (--import.batch_size,
// --synapse.config, …); a flag given on the command line overrides the
// environment and the file.
func AddSettingsFlags(fs *pflag.FlagSet) {
	keys := make([]string, 0, len(defaults))
	for k := range defaults {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		usage := "settings key " + k
		switch d := defaults[k].(type) {
		case []string:
			fs.StringSlice(k, d, usage)
		case int:
			fs.Int(k, d, usage)
		case bool:
			fs.Bool(k, d, usage)
		case string:
			fs.String(k, d, usage)
		}
	}
}

func (s Settings) validate(where string) error {
	var errs []error
	check := func(ok bool, key string, val any, want string) {
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %s is %v; %s", where, key, val, want))
		}
	}
	check(len(s.Synapse.Config) > 0, "synapse.config", s.Synapse.Config, "list Synapse's config files/directories")
	check(len(s.MAS.Config) > 0, "mas.config", s.MAS.Config, "list MAS's config files")
	check(s.Import.BatchSize >= 1 && s.Import.BatchSize <= 100000, "import.batch_size", s.Import.BatchSize, "use 1 to 100000")
	check(s.Import.Parallelism >= 1 && s.Import.Parallelism <= 64, "import.parallelism", s.Import.Parallelism, "use 1 to 64")
	check(s.Import.HeartbeatSeconds >= 1 && s.Import.HeartbeatSeconds <= 3600, "import.heartbeat_seconds",
		s.Import.HeartbeatSeconds, "use 1 to 3600")
	check(s.Import.ShardsPerEntity >= 1 && s.Import.ShardsPerEntity <= 1024, "import.shards_per_entity",
		s.Import.ShardsPerEntity, "use 1 to 1024")
	check(s.Homeserver.Controller == "none", "homeserver.controller", s.Homeserver.Controller, `use "none" (verify only)`)
	check(map[string]bool{"debug": true, "info": true, "warn": true, "error": true}[s.Worker.LogLevel],
		"worker.log_level", s.Worker.LogLevel, "use debug, info, warn or error")
	return errors.Join(errs...)
}
