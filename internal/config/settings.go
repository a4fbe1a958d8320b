package config

import (
	"errors"
	"fmt"
	"slices"
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
	Backup     BackupSettings     `mapstructure:"backup"`
	Verify     VerifySettings     `mapstructure:"verify"`
	Worker     WorkerSettings     `mapstructure:"worker"`
}

// Controllers are the values of homeserver.controller.
var Controllers = []string{"none", "command", "systemd", "compose", "kubernetes"}

// HomeserverSettings choose how Synapse and MAS are stopped, reconfigured
// and started (docs/homeserver.md).
type HomeserverSettings struct {
	// Controller drives the deployment: "none" only verifies each step
	// the operator performs; "command", "systemd", "compose" and
	// "kubernetes" perform them.
	Controller string `mapstructure:"controller"`
	// MASEndpoint is where Synapse reaches MAS (default MAS's
	// http.public_base).
	MASEndpoint string `mapstructure:"mas_endpoint"`
	// MASSecretPath is the file Synapse reads MAS's shared secret from
	// (matrix_authentication_service.secret_path). Default: MAS's
	// matrix.secret_file when set, else mas_secret next to Synapse's
	// first config file, written by reconfigure.
	MASSecretPath string `mapstructure:"mas_secret_path"`
	// SynapsePython, when set, is a Python with Synapse installed: its
	// config parser validates the rewritten config before any restart.
	SynapsePython string `mapstructure:"synapse_python"`
	// WellKnownFile, when set, is the client discovery document the web
	// server serves: the reconfigure step rewrites it for MAS (the
	// original kept as <file>.pre-mas, put back by a rollback).
	WellKnownFile string `mapstructure:"well_known_file"`
	// StopTimeoutSeconds bounds the wait for a verified stop, and
	// StartTimeoutSeconds the wait for /health after a start.
	StopTimeoutSeconds  int                `mapstructure:"stop_timeout_seconds"`
	StartTimeoutSeconds int                `mapstructure:"start_timeout_seconds"`
	Command             CommandSettings    `mapstructure:"command"`
	Systemd             SystemdSettings    `mapstructure:"systemd"`
	Compose             ComposeSettings    `mapstructure:"compose"`
	Kubernetes          KubernetesSettings `mapstructure:"kubernetes"`
}

// CommandSettings are the operator's shell commands (controller command).
type CommandSettings struct {
	Stop           string `mapstructure:"stop"`
	Start          string `mapstructure:"start"`
	MASStop        string `mapstructure:"mas_stop"`
	MASStart       string `mapstructure:"mas_start"`
	TimeoutSeconds int    `mapstructure:"timeout_seconds"`
}

// SystemdSettings name the units (controller systemd).
type SystemdSettings struct {
	SynapseUnits []string `mapstructure:"synapse_units"`
	MASUnits     []string `mapstructure:"mas_units"`
}

// ComposeSettings name the compose project and services (controller compose).
type ComposeSettings struct {
	File            string   `mapstructure:"file"`
	Project         string   `mapstructure:"project"`
	SynapseServices []string `mapstructure:"synapse_services"`
	MASServices     []string `mapstructure:"mas_services"`
}

// KubernetesSettings select the workloads (controller kubernetes).
type KubernetesSettings struct {
	Namespace       string `mapstructure:"namespace"`
	SynapseSelector string `mapstructure:"synapse_selector"`
	MASSelector     string `mapstructure:"mas_selector"`
	// Kubeconfig, when empty, means in-cluster credentials.
	Kubeconfig string `mapstructure:"kubeconfig"`
}

// BackupSettings say where the backup step writes.
type BackupSettings struct {
	// Dir receives pg_dump archives of both databases and copies of the
	// Synapse config files (required unless the controller is none).
	Dir       string `mapstructure:"dir"`
	PgDump    string `mapstructure:"pg_dump"`
	PgRestore string `mapstructure:"pg_restore"`
}

// VerifySettings tune the verification after the start.
type VerifySettings struct {
	// BaseURL is Synapse's client URL (default its public_baseurl).
	BaseURL string `mapstructure:"base_url"`
	// WellKnownURL default https://<server_name>/.well-known/matrix/client.
	WellKnownURL string `mapstructure:"well_known_url"`
	// SampleTokens is how many migrated access tokens are tried.
	SampleTokens int `mapstructure:"sample_tokens"`
	// CanaryUser and CanaryPasswordFile name a user prepared before the
	// migration and the file with its password: the verify step logs it in
	// through the compatibility layer (empty: no canary).
	CanaryUser         string `mapstructure:"canary_user"`
	CanaryPasswordFile string `mapstructure:"canary_password_file"`
	// SettleSeconds is how long the verify step sends failing probes again
	// before the migration needs a human.
	SettleSeconds int `mapstructure:"settle_seconds"`
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
	// CLI is the mas-cli executable the sync_schema step runs.
	CLI string `mapstructure:"cli"`
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
	// CatchUpMinutes is the interval of the catch-up passes that keep a
	// pre-copy fresh while the migration waits for its cut-over (0: none).
	CatchUpMinutes int `mapstructure:"catch_up_minutes"`
}

// defaults are every key with its default; viper needs each key known to
// apply environment overrides when unmarshalling.
var defaults = map[string]any{
	"synapse.config":                         []string{"/etc/matrix-synapse/homeserver.yaml"},
	"mas.config":                             []string{"/etc/mas/config.yaml"},
	"import.batch_size":                      5000,
	"import.parallelism":                     4,
	"import.shards_per_entity":               0,
	"import.strict":                          false,
	"import.ignore_missing_providers":        false,
	"import.salt_file":                       "",
	"import.report_dir":                      ".",
	"import.heartbeat_seconds":               10,
	"import.catch_up_minutes":                15,
	"mas.cli":                                "mas-cli",
	"homeserver.controller":                  "none",
	"homeserver.mas_endpoint":                "",
	"homeserver.mas_secret_path":             "",
	"homeserver.synapse_python":              "",
	"homeserver.well_known_file":             "",
	"homeserver.stop_timeout_seconds":        120,
	"homeserver.start_timeout_seconds":       180,
	"homeserver.command.stop":                "",
	"homeserver.command.start":               "",
	"homeserver.command.mas_stop":            "",
	"homeserver.command.mas_start":           "",
	"homeserver.command.timeout_seconds":     300,
	"homeserver.systemd.synapse_units":       []string{"matrix-synapse.target"},
	"homeserver.systemd.mas_units":           []string{},
	"homeserver.compose.file":                "",
	"homeserver.compose.project":             "",
	"homeserver.compose.synapse_services":    []string{},
	"homeserver.compose.mas_services":        []string{},
	"homeserver.kubernetes.namespace":        "",
	"homeserver.kubernetes.synapse_selector": "app.kubernetes.io/component=matrix-server",
	"homeserver.kubernetes.mas_selector":     "",
	"homeserver.kubernetes.kubeconfig":       "",
	"backup.dir":                             "",
	"backup.pg_dump":                         "pg_dump",
	"backup.pg_restore":                      "pg_restore",
	"verify.base_url":                        "",
	"verify.well_known_url":                  "",
	"verify.sample_tokens":                   20,
	"verify.canary_user":                     "",
	"verify.canary_password_file":            "",
	"verify.settle_seconds":                  60,
	"worker.host_task_queue":                 "",
	"worker.log_level":                       "info",
	"worker.metrics_address":                 "",
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
	check(s.Import.CatchUpMinutes >= 0 && s.Import.CatchUpMinutes <= 10080, "import.catch_up_minutes",
		s.Import.CatchUpMinutes, "use 0 (no catch-up passes) to 10080 (a week)")
	check(s.Import.ShardsPerEntity >= 1 && s.Import.ShardsPerEntity <= 1024, "import.shards_per_entity",
		s.Import.ShardsPerEntity, "use 1 to 1024")
	errs = append(errs, s.Homeserver.validate(where, s.Backup)...)
	check(s.Verify.SampleTokens >= 0 && s.Verify.SampleTokens <= 1000, "verify.sample_tokens", s.Verify.SampleTokens,
		"use 0 to 1000")
	check(s.Verify.SettleSeconds >= 0 && s.Verify.SettleSeconds <= 3600, "verify.settle_seconds", s.Verify.SettleSeconds,
		"use 0 to 3600")
	check((s.Verify.CanaryUser == "") == (s.Verify.CanaryPasswordFile == ""), "verify.canary_user",
		fmt.Sprintf("%q with canary_password_file %q", s.Verify.CanaryUser, s.Verify.CanaryPasswordFile),
		"set both verify.canary_user and verify.canary_password_file, or neither")
	check(map[string]bool{"debug": true, "info": true, "warn": true, "error": true}[s.Worker.LogLevel],
		"worker.log_level", s.Worker.LogLevel, "use debug, info, warn or error")
	return errors.Join(errs...)
}

// validate checks the chosen controller has what it needs.
func (h HomeserverSettings) validate(where string, b BackupSettings) []error {
	var errs []error
	need := func(ok bool, key, want string) {
		if !ok {
			errs = append(errs, fmt.Errorf("%s: homeserver.controller is %s but %s; %s", where, h.Controller, key, want))
		}
	}
	if !slices.Contains(Controllers, h.Controller) {
		return []error{fmt.Errorf("%s: homeserver.controller is %q; use one of %s", where, h.Controller,
			strings.Join(Controllers, ", "))}
	}
	switch h.Controller {
	case "none":
		return nil
	case "command":
		need(h.Command.Stop != "" && h.Command.Start != "", "homeserver.command.stop or .start is empty",
			"give the shell commands that stop and start Synapse")
		need(h.Command.TimeoutSeconds >= 1, "homeserver.command.timeout_seconds < 1", "use at least 1")
	case "systemd":
		need(len(h.Systemd.SynapseUnits) > 0, "homeserver.systemd.synapse_units is empty",
			"name Synapse's units, e.g. matrix-synapse.target")
	case "compose":
		need(len(h.Compose.SynapseServices) > 0, "homeserver.compose.synapse_services is empty",
			"name the compose services of Synapse and its workers")
	case "kubernetes":
		need(h.Kubernetes.Namespace != "", "homeserver.kubernetes.namespace is empty", "name Synapse's namespace")
		need(h.Kubernetes.SynapseSelector != "", "homeserver.kubernetes.synapse_selector is empty",
			"give the label selector of Synapse's workloads")
	}
	need(b.Dir != "", "backup.dir is empty", "give a directory with room for dumps of both databases")
	need(h.StopTimeoutSeconds >= 1 && h.StartTimeoutSeconds >= 1, "a homeserver.*_timeout_seconds is below 1",
		"use at least 1")
	return errs
}
