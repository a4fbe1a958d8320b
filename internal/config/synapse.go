package config

import (
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/masflow/masflow/internal/secret"
)

// Synapse is what masflow reads from Synapse's configuration.
type Synapse struct {
	// Files are the files read, in order.
	Files []string
	// Sources maps each top-level key to the file that defined it last
	// (the file a rewrite must edit).
	Sources map[string]string
	// Raw is the merged top level, for the advisor's checks.
	Raw map[string]any

	ServerName string
	Database   SynapseDatabase
	Password   PasswordConfig
}

// SynapseDatabase is Synapse's database section.
type SynapseDatabase struct {
	// Name is the driver: "psycopg2" (PostgreSQL) or "sqlite3".
	Name string
	// Params are libpq keywords from database.args (password excluded).
	Params   map[string]string
	Password secret.String
}

// PasswordConfig is Synapse's password_config section.
type PasswordConfig struct {
	// Enabled is "true", "false" or "only_for_reauth".
	Enabled        string
	LocalDBEnabled bool
	Pepper         secret.String
}

// Connection-pool arguments of Synapse's database driver, not libpq's.
var poolOnlyArgs = map[string]bool{"cp_min": true, "cp_max": true, "cp_reconnect": true, "cp_noisy": true, "cp_openfun": true}

// LoadSynapse reads Synapse's config the way Synapse does: each path a
// file or a directory of *.yaml files (sorted), top-level keys merged
// shallowly, later files winning.
func LoadSynapse(paths ...string) (*Synapse, error) {
	files, err := expandPaths(paths)
	if err != nil {
		return nil, err
	}
	s := &Synapse{Files: files, Sources: map[string]string{}, Raw: map[string]any{}}
	for _, f := range files {
		y, err := readYAML(f)
		if err != nil {
			return nil, err
		}
		for k, v := range y.doc {
			s.Raw[k], s.Sources[k] = v, f
		}
	}
	if s.ServerName, err = str(s.Raw, s.Src("server_name"), "server_name"); err != nil {
		return nil, err
	}
	if s.ServerName == "" {
		return nil, fmt.Errorf("none of %v sets server_name: pass every file Synapse is started with (-c)", files)
	}
	if err := s.loadDatabase(); err != nil {
		return nil, err
	}
	return s, s.loadPasswordConfig()
}

// Src names the file defining a top-level key, for messages.
func (s *Synapse) Src(key string) string {
	if f, ok := s.Sources[key]; ok {
		return f
	}
	return fmt.Sprint(s.Files)
}

func (s *Synapse) loadDatabase() error {
	file := s.Src("database")
	db, err := section(s.Raw, file, "database")
	if err != nil {
		return err
	}
	if s.Database.Name, err = str(db, file, "database.name"); err != nil {
		return err
	}
	args, err := section(db, file, "database.args")
	if err != nil {
		return err
	}
	s.Database.Params = map[string]string{}
	for k := range args {
		v, err := str(args, file, "database.args."+k)
		if err != nil {
			return err
		}
		switch {
		case poolOnlyArgs[k]:
		case k == "password":
			s.Database.Password = secret.String(v)
		case k == "database":
			s.Database.Params["dbname"] = v
		default:
			s.Database.Params[k] = v
		}
	}
	return nil
}

func (s *Synapse) loadPasswordConfig() error {
	file := s.Src("password_config")
	pc, err := section(s.Raw, file, "password_config")
	if err != nil {
		return err
	}
	s.Password.Enabled = "true"
	if v, ok := pc["enabled"]; ok && v != nil {
		s.Password.Enabled = fmt.Sprint(v)
	}
	if s.Password.LocalDBEnabled, err = boolean(pc, file, "password_config.localdb_enabled", true); err != nil {
		return err
	}
	pepper, err := str(pc, file, "password_config.pepper")
	s.Password.Pepper = secret.String(pepper)
	return err
}

// PoolConfig returns the connection settings of Synapse's database. Only
// PostgreSQL (psycopg2) is supported, as by MAS.
func (s *Synapse) PoolConfig() (*pgxpool.Config, error) {
	file := s.Src("database")
	if s.Database.Name != "psycopg2" {
		return nil, fmt.Errorf("%s: database.name is %q: only PostgreSQL (psycopg2) can be migrated to MAS; "+
			"port the database first with synapse_port_db", file, s.Database.Name)
	}
	kv := map[string]string{}
	for k, v := range s.Database.Params {
		kv[k] = v
	}
	if !s.Database.Password.IsEmpty() {
		kv["password"] = s.Database.Password.Reveal()
	}
	cfg, err := pgxpool.ParseConfig(conninfo(kv))
	if err != nil {
		return nil, fmt.Errorf("%s: database.args are not valid libpq connection settings: %s",
			file, scrub(err, s.Database.Password))
	}
	return cfg, nil
}
