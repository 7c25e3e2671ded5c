package devstack

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/log"
	postgresplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/postgresql"
	"go.temporal.io/server/tools/common/schema"
	sqltool "go.temporal.io/server/tools/sql"

	"github.com/blindfold-dev/blindfold/internal/devstack/pgurl"
)

// Schema names inside the server's embedded schema files (go.temporal.io/server/schema): the same directories
// temporal-sql-tool's --schema-name takes.
const (
	postgresSchema           = "postgresql/v12/temporal"
	postgresVisibilitySchema = "postgresql/v12/visibility"
)

// VisibilitySuffix is appended to the database named in a PostgreSQL URL to name the visibility database: Temporal
// keeps the two schemas (each with its own schema_version row) in separate databases.
const VisibilitySuffix = "_visibility"

// maintenanceDB is the database connected to for CREATE DATABASE: it exists in every PostgreSQL cluster.
const maintenanceDB = "postgres"

// PostgresConfigs parses a postgres:// (or postgresql://) URL into the server's SQL configurations of the main store
// (the URL's database, "temporal" when the path is empty) and the visibility store (the same name with
// VisibilitySuffix). Query parameters (sslmode, sslrootcert, …) are passed to the driver as they are. The password is
// never part of an error message.
func PostgresConfigs(rawURL string) (main, visibility *config.SQL, err error) {
	u, err := pgurl.Parse(rawURL)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	main = &config.SQL{
		// The pgx driver: its default sslmode is "prefer", like libpq's, so a local server without TLS just works.
		PluginName:        postgresplugin.PluginNamePGX,
		DatabaseName:      u.Database,
		ConnectAddr:       u.Addr,
		ConnectProtocol:   "tcp",
		User:              u.User,
		Password:          u.Password,
		ConnectAttributes: u.Params,
		// Temporal's own server image defaults: without them database/sql keeps two idle connections and opens a
		// new one (a PostgreSQL backend process and an authentication) for most queries under load.
		MaxConns:        20,
		MaxIdleConns:    20,
		MaxConnLifetime: time.Hour,
	}
	vis := *main
	vis.DatabaseName = u.Database + VisibilitySuffix
	vis.ConnectAttributes = maps.Clone(u.Params)
	return main, &vis, nil
}

// preparePostgres creates the database if it is missing, then creates or updates its schema with the server's own
// schema tooling (temporal-sql-tool's setup-schema and update-schema, used as a library): a fresh database gets the
// version tables and then every versioned change up to the schema this server build needs; an existing one gets
// only the changes it lacks.
func preparePostgres(conf *config.SQL, schemaName string, logger log.Logger) error {
	// The server's SQL handle connects lazily and retries, so probe once with the driver itself: a missing database
	// is created, anything else (unreachable, wrong password) is reported as it is.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	probe, err := pgx.Connect(ctx, postgresDSN(conf))
	if isMissingDatabase(err) {
		c := *conf
		if cerr := sqltool.DoCreateDatabase(&c, maintenanceDB, logger); cerr != nil {
			return fmt.Errorf("create postgresql database %q (the user needs CREATEDB, or create it yourself): %w", conf.DatabaseName, cerr)
		}
		probe, err = pgx.Connect(ctx, postgresDSN(conf))
	}
	if err != nil {
		return fmt.Errorf("connect to postgresql database %q at %s: %w", conf.DatabaseName, conf.ConnectAddr, err)
	}
	_ = probe.Close(ctx)
	conn, err := sqltool.NewConnection(conf, logger)
	if err != nil {
		return fmt.Errorf("connect to postgresql database %q at %s: %w", conf.DatabaseName, conf.ConnectAddr, err)
	}
	defer conn.Close()
	tables, err := conn.ListTables()
	if err != nil {
		return fmt.Errorf("list tables of %q: %w", conf.DatabaseName, err)
	}
	if !slices.Contains(tables, "schema_version") {
		setup := schema.NewSetupSchemaTask(conn, &schema.SetupConfig{InitialVersion: "0.0"}, logger)
		if err := setup.Run(); err != nil {
			return fmt.Errorf("set up schema version tables in %q: %w", conf.DatabaseName, err)
		}
	}
	update := schema.NewUpdateSchemaTask(conn, &schema.UpdateConfig{DBName: conf.DatabaseName, SchemaName: schemaName}, logger)
	if err := update.Run(); err != nil {
		return fmt.Errorf("update schema %s in %q: %w", schemaName, conf.DatabaseName, err)
	}
	return nil
}

// postgresDSN is the URL the server's driver builds from conf (see its session package).
func postgresDSN(conf *config.SQL) string {
	q := url.Values{}
	for k, v := range conf.ConnectAttributes {
		q.Set(k, v)
	}
	u := url.URL{Scheme: "postgres", User: url.UserPassword(conf.User, conf.Password), Host: conf.ConnectAddr,
		Path: "/" + conf.DatabaseName, RawQuery: q.Encode()}
	return u.String()
}

// isMissingDatabase reports whether err is PostgreSQL's invalid_catalog_name: the database does not exist.
func isMissingDatabase(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "3D000"
}
