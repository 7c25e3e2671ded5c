package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uiserveroptions "github.com/temporalio/ui-server/v2/server/server_options"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/server/common/cluster"
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/dynamicconfig"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/membership/static"
	sqliteplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/sqlite"
	"go.temporal.io/server/common/primitives"
	sqliteschema "go.temporal.io/server/schema/sqlite"
	"go.temporal.io/server/temporal"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
)

// Ports that `blindfold dev` uses by default. The zero Config picks free
// ports instead; these are for callers that want stable addresses. The raw
// frontend deliberately avoids 7233, which belongs to the Blindfold proxy so
// that SDK defaults go through encryption.
const (
	DefaultFrontendPort = 7234
	DefaultUIPort       = 8233
)

// DefaultNamespace is registered in every stack.
const DefaultNamespace = "default"

// DefaultRetention is the retention of namespaces the stack registers, the
// same as the Temporal CLI's dev server.
const DefaultRetention = 24 * time.Hour

// DBFileName is the name of the SQLite database inside the data directory.
const DBFileName = "temporal.db"

// clusterName is the name of the single cluster; the CLI uses the same.
const clusterName = "active"

// ErrInvalidConfig is wrapped by the errors Start returns for a Config it
// cannot run.
var ErrInvalidConfig = errors.New("devstack: invalid config")

// Config says how to run a Stack. The zero value is valid: an ephemeral data
// directory, free loopback ports, no UI.
type Config struct {
	// Postgres, when set, is a postgres:// URL of the database the server
	// keeps its state in instead of SQLite (see PostgresConfigs): the
	// database and its visibility companion are created if missing and their
	// schema is created or brought up to date before the server starts. The
	// PostgreSQL server itself is the caller's. DataDir then holds nothing.
	Postgres string

	// DataDir holds the SQLite database (DBFileName). It is created if
	// missing; a stack started again on the same directory sees the same
	// namespaces and workflows. Empty means a fresh temporary directory that
	// Stop removes.
	DataDir string

	// Host is the IP every listener binds to. Empty means 127.0.0.1. Only a
	// loopback address is sensible: the stack has no authentication.
	Host string

	// Ports; 0 picks a free port. FrontendPort is the raw frontend's gRPC
	// port (see DefaultFrontendPort for the one `blindfold dev` uses).
	FrontendPort     int
	FrontendHTTPPort int
	HistoryPort      int
	MatchingPort     int
	WorkerPort       int

	// Namespaces are registered in addition to DefaultNamespace.
	Namespaces []string
	// Retention of the namespaces registered by this stack; 0 means
	// DefaultRetention. It applies only when a namespace is first created.
	Retention time.Duration

	// DynamicConfig overrides server dynamic config values by key.
	DynamicConfig map[string]any

	// LogLevel of the server's own log ("debug", "info", "warn", "error").
	// Empty means "error": lower levels flood the output.
	LogLevel string
	// LogOutput receives the server's log; nil means os.Stderr. Use
	// io.Discard to silence it.
	LogOutput io.Writer

	// UI starts the Temporal Web UI, reading from the raw frontend.
	UI bool
	// UIPort is the Web UI's HTTP port; 0 picks a free one.
	UIPort int
	// UICodecEndpoint is the remote codec endpoint the UI's browser code
	// calls to decode payloads (the Blindfold codec endpoint). Empty means
	// the UI shows payloads as stored.
	UICodecEndpoint string
	// UICodecPassAccessToken makes the UI send the user's access token to the
	// codec endpoint.
	UICodecPassAccessToken bool
	// UICodecIncludeCredentials makes the UI send cookies to the codec
	// endpoint (fetch credentials: include).
	UICodecIncludeCredentials bool
}

// Stack is a running Temporal server, and optionally Web UI, in this process.
type Stack struct {
	dataDir      string
	ephemeral    bool
	host         string
	frontendPort int
	httpPort     int
	uiPort       int
	namespaces   []string

	server   temporal.Server
	logLevel zap.AtomicLevel
	ui       *uiserver.Server
	uiDone   chan error

	stopOnce sync.Once
	stopped  chan struct{}
	stopErr  error
}

// Start builds the database if needed, starts the server and, if cfg.UI is
// set, the Web UI, and returns once the frontend answers DescribeNamespace
// for every registered namespace (and the UI answers HTTP). ctx bounds
// start-up; the stack runs until Stop. On error nothing is left running.
//
// The Web UI server exits the process if it cannot listen. Start checks
// every port, the UI's included, before starting anything and returns an
// error naming a busy one; only a port taken by someone else in the
// following fraction of a second can still hit that exit.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &Stack{host: cfg.Host, stopped: make(chan struct{})}
	if s.host == "" {
		s.host = "127.0.0.1"
	}
	if net.ParseIP(s.host) == nil {
		return nil, fmt.Errorf("%w: host %q is not an IP address", ErrInvalidConfig, s.host)
	}
	s.namespaces, err = namespaceList(cfg.Namespaces)
	if err != nil {
		return nil, err
	}
	retention := cfg.Retention
	if retention == 0 {
		retention = DefaultRetention
	}
	if retention < 0 {
		return nil, fmt.Errorf("%w: negative retention %v", ErrInvalidConfig, retention)
	}
	logger, logLevel, err := newLogger(cfg.LogLevel, cfg.LogOutput)
	if err != nil {
		return nil, err
	}
	s.logLevel = logLevel

	s.dataDir = cfg.DataDir
	if s.dataDir == "" {
		if s.dataDir, err = os.MkdirTemp("", "blindfold-devstack-"); err != nil {
			return nil, fmt.Errorf("create temporary data dir: %w", err)
		}
		s.ephemeral = true
	} else if err := os.MkdirAll(s.dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	defer func() {
		if err != nil && s.ephemeral {
			_ = os.RemoveAll(s.dataDir)
		}
	}()

	ports, err := s.pickPorts(cfg)
	if err != nil {
		return nil, err
	}

	var stores persistenceStores
	if cfg.Postgres != "" {
		if stores, err = preparePostgresStores(cfg.Postgres, s.namespaces, retention, logger); err != nil {
			return nil, err
		}
	} else {
		sqlConf := s.sqlConfig()
		if err := prepareDatabase(sqlConf, s.namespaces, retention); err != nil {
			return nil, err
		}
		stores = persistenceStores{name: "sqlite-default", main: sqlConf}
	}

	s.server, err = temporal.NewServer(s.serverOptions(cfg, ports, stores, logger)...)
	if err != nil {
		return nil, fmt.Errorf("build temporal server: %w", err)
	}
	if err := s.server.Start(); err != nil {
		_ = s.server.Stop()
		return nil, fmt.Errorf("start temporal server: %w", err)
	}
	// From here on, any failure must stop what is running.
	defer func() {
		if err != nil {
			_ = s.Stop(context.Background())
		}
	}()

	if cfg.UI {
		if err := s.startUI(ctx, cfg); err != nil {
			return nil, err
		}
	}
	if err := s.waitFrontend(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// FrontendAddr is host:port of the raw frontend gRPC endpoint: no
// encryption, no authentication.
func (s *Stack) FrontendAddr() string {
	return net.JoinHostPort(s.host, strconv.Itoa(s.frontendPort))
}

// FrontendHTTPAddr is host:port of the raw frontend's HTTP API.
func (s *Stack) FrontendHTTPAddr() string {
	return net.JoinHostPort(s.host, strconv.Itoa(s.httpPort))
}

// UIAddr is the Web UI's base URL (http://host:port), or "" without UI.
func (s *Stack) UIAddr() string {
	if s.ui == nil {
		return ""
	}
	return "http://" + net.JoinHostPort(s.host, strconv.Itoa(s.uiPort))
}

// DataDir is the directory holding the database.
func (s *Stack) DataDir() string { return s.dataDir }

// SQLitePath is the path of the SQLite database file.
func (s *Stack) SQLitePath() string { return filepath.Join(s.dataDir, DBFileName) }

// SQLiteFiles lists the database file and whichever of its journal, WAL and
// shared-memory companions exist now: everything a scan for plaintext in
// the stored state must read.
func (s *Stack) SQLiteFiles() []string {
	main := s.SQLitePath()
	files := []string{main}
	for _, suffix := range []string{"-journal", "-wal", "-shm"} {
		if _, err := os.Stat(main + suffix); err == nil {
			files = append(files, main+suffix)
		}
	}
	return files
}

// Namespaces lists the namespaces the stack registered, DefaultNamespace
// first.
func (s *Stack) Namespaces() []string { return slices.Clone(s.namespaces) }

// Stop shuts down the UI and the server and, for an ephemeral stack, removes
// the data directory. It is safe to call more than once and from several
// goroutines; every call waits for the same shutdown, or for ctx. It takes
// about a second: the frontend drains requests for at least that long.
//
// The Temporal server does not reclaim everything it started: after Stop,
// about a hundred goroutines remain per stopped stack (the server's
// internal SDK workers keep retrying their polls against the closed
// frontend, and its SQLite handles stay open). That is harmless for one
// stack per process; tests that check for goroutine leaks must account for
// it, and a process should not start a new stack on the same fixed ports
// after stopping one, because those workers would reconnect to it.
func (s *Stack) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		go func() {
			defer close(s.stopped)
			s.stopErr = s.shutdown()
		}()
	})
	select {
	case <-s.stopped:
		return s.stopErr
	case <-ctx.Done():
		return fmt.Errorf("stop dev stack: %w", ctx.Err())
	}
}

func (s *Stack) shutdown() error {
	// Every service logs its in-flight calls failing with "context
	// canceled" at error level while it stops, and the server's leftover
	// workers keep failing afterwards (see Stop): noise, not news. Real
	// failures come back as Stop's error.
	s.logLevel.SetLevel(zapcore.FatalLevel)
	var errs []error
	if s.ui != nil {
		s.ui.Stop()
		if err := <-s.uiDone; err != nil {
			errs = append(errs, fmt.Errorf("web ui: %w", err))
		}
	}
	if s.server != nil {
		if err := s.server.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop temporal server: %w", err))
		}
	}
	if s.ephemeral {
		if err := os.RemoveAll(s.dataDir); err != nil {
			errs = append(errs, fmt.Errorf("remove data dir: %w", err))
		}
	}
	return errors.Join(errs...)
}

type servicePorts struct {
	frontend, http, history, matching, worker int
}

// pickPorts resolves every zero port to a free one on the host. A port found
// free can be taken by someone else before the server binds it; on loopback
// with kernel-assigned ephemeral ports that race is rare, and it surfaces
// as a start error, not a hang.
func (s *Stack) pickPorts(cfg Config) (servicePorts, error) {
	p := servicePorts{
		frontend: cfg.FrontendPort,
		http:     cfg.FrontendHTTPPort,
		history:  cfg.HistoryPort,
		matching: cfg.MatchingPort,
		worker:   cfg.WorkerPort,
	}
	s.uiPort = cfg.UIPort
	all := []*int{&p.frontend, &p.http, &p.history, &p.matching, &p.worker}
	if cfg.UI {
		all = append(all, &s.uiPort)
	}
	// Hold every listener until all ports are chosen, so the kernel cannot
	// hand out the same port twice.
	var held []net.Listener
	defer func() {
		for _, l := range held {
			_ = l.Close()
		}
	}()
	for _, port := range all {
		if *port < 0 || *port > 65535 {
			return p, fmt.Errorf("%w: port %d out of range", ErrInvalidConfig, *port)
		}
		l, err := net.Listen("tcp", net.JoinHostPort(s.host, strconv.Itoa(*port)))
		if err != nil {
			return p, fmt.Errorf("port %d on %s is not available: %w", *port, s.host, err)
		}
		held = append(held, l)
		*port = l.Addr().(*net.TCPAddr).Port
	}
	s.frontendPort, s.httpPort = p.frontend, p.http
	return p, nil
}

func (s *Stack) sqlConfig() *config.SQL {
	return &config.SQL{
		PluginName:        sqliteplugin.PluginName,
		DatabaseName:      s.SQLitePath(),
		ConnectAttributes: map[string]string{"mode": "rwc"},
	}
}

// prepareDatabase creates the schema if the database file does not exist
// yet, then registers the namespaces that are missing. Doing this before the
// server starts is what the Temporal CLI does: the server then finds the
// namespaces at start instead of after a namespace-cache refresh.
func prepareDatabase(conf *config.SQL, namespaces []string, retention time.Duration) error {
	if _, err := os.Stat(conf.DatabaseName); errors.Is(err, os.ErrNotExist) {
		if err := createSchema(conf); err != nil {
			return err
		}
	} else if err != nil {
		return fmt.Errorf("check database file: %w", err)
	}
	return registerNamespaces(conf, namespaces, retention)
}

// registerNamespaces inserts the namespaces that are missing straight into the database. The function lives in the
// server's sqlite schema package but works through the generic SQL persistence layer, so it serves PostgreSQL too.
func registerNamespaces(conf *config.SQL, namespaces []string, retention time.Duration) error {
	nsConfigs := make([]*sqliteschema.NamespaceConfig, 0, len(namespaces))
	for _, ns := range namespaces {
		nc, err := sqliteschema.NewNamespaceConfig(clusterName, ns, false, nil)
		if err != nil {
			return fmt.Errorf("namespace %q config: %w", ns, err)
		}
		nc.Detail.Config.Retention = durationpb.New(retention)
		nsConfigs = append(nsConfigs, nc)
	}
	if err := sqliteschema.CreateNamespaces(conf, nsConfigs...); err != nil {
		return fmt.Errorf("register namespaces: %w", err)
	}
	return nil
}

// createSchema builds the schema in a side file and renames it into place,
// so a crash half-way never leaves a database file that looks initialised.
//
// The side file is written without per-statement syncs (a hundred-odd DDL
// statements would otherwise cost about half a second of fsyncs) and synced
// once before the rename.
func createSchema(conf *config.SQL) error {
	tmp := *conf
	tmp.DatabaseName = conf.DatabaseName + ".init"
	tmp.ConnectAttributes = maps.Clone(conf.ConnectAttributes)
	tmp.ConnectAttributes["synchronous"] = "off"
	tmp.ConnectAttributes["journal_mode"] = "memory"
	_ = os.Remove(tmp.DatabaseName)
	err := sqliteschema.SetupSchema(&tmp)
	if err == nil {
		err = syncFile(tmp.DatabaseName)
	}
	if err != nil {
		_ = os.Remove(tmp.DatabaseName)
		return fmt.Errorf("create sqlite schema: %w", err)
	}
	if err := os.Rename(tmp.DatabaseName, conf.DatabaseName); err != nil {
		return fmt.Errorf("install sqlite schema: %w", err)
	}
	return syncFile(filepath.Dir(conf.DatabaseName))
}

// syncFile flushes a file, or a directory's entries, to disk.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	defer func() { _ = f.Close() }()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

// persistenceStores names the server's data stores: main holds everything, and visibility, when set, the visibility
// records (SQLite keeps both in one file).
type persistenceStores struct {
	name       string
	main       *config.SQL
	visibility *config.SQL
}

// preparePostgresStores creates or updates both PostgreSQL databases and registers the namespaces.
func preparePostgresStores(rawURL string, namespaces []string, retention time.Duration, logger log.Logger) (persistenceStores, error) {
	main, vis, err := PostgresConfigs(rawURL)
	if err != nil {
		return persistenceStores{}, err
	}
	if err := preparePostgres(main, postgresSchema, logger); err != nil {
		return persistenceStores{}, err
	}
	if err := preparePostgres(vis, postgresVisibilitySchema, logger); err != nil {
		return persistenceStores{}, err
	}
	if err := registerNamespaces(main, namespaces, retention); err != nil {
		return persistenceStores{}, err
	}
	return persistenceStores{name: "postgres-default", main: main, visibility: vis}, nil
}

func (s *Stack) serverOptions(cfg Config, p servicePorts, stores persistenceStores, logger log.Logger) []temporal.ServerOption {
	hostPort := func(port int) string { return net.JoinHostPort(s.host, strconv.Itoa(port)) }
	frontend := hostPort(p.frontend)

	var conf config.Config
	conf.Global.Membership.MaxJoinDuration = 30 * time.Second
	conf.Global.Membership.BroadcastAddress = s.host
	conf.Persistence.DefaultStore = stores.name
	conf.Persistence.VisibilityStore = stores.name
	conf.Persistence.NumHistoryShards = 1
	conf.Persistence.DataStores = map[string]config.DataStore{stores.name: {SQL: stores.main}}
	if stores.visibility != nil {
		conf.Persistence.VisibilityStore = stores.name + "-visibility"
		conf.Persistence.DataStores[conf.Persistence.VisibilityStore] = config.DataStore{SQL: stores.visibility}
	}
	conf.ClusterMetadata = &cluster.Config{
		FailoverVersionIncrement: 10,
		MasterClusterName:        clusterName,
		CurrentClusterName:       clusterName,
		ClusterInformation: map[string]cluster.ClusterInformation{
			clusterName: {
				Enabled:                true,
				InitialFailoverVersion: 1,
				// Both point at the frontend: the worker service and
				// cross-service calls dial these.
				RPCAddress:  frontend,
				HTTPAddress: hostPort(p.http),
				ClusterID:   primitives.NewUUID().String(),
			},
		},
	}
	conf.DCRedirectionPolicy.Policy = "noop"
	service := func(grpcPort, httpPort int) config.Service {
		var svc config.Service
		svc.RPC.GRPCPort = grpcPort
		svc.RPC.HTTPPort = httpPort
		svc.RPC.BindOnIP = s.host
		return svc
	}
	conf.Services = map[string]config.Service{
		string(primitives.FrontendService): service(p.frontend, p.http),
		string(primitives.HistoryService):  service(p.history, 0),
		string(primitives.MatchingService): service(p.matching, 0),
		string(primitives.WorkerService):   service(p.worker, 0),
	}
	conf.Archival.History.State = "disabled"
	conf.Archival.Visibility.State = "disabled"
	conf.NamespaceDefaults.Archival.History.State = "disabled"
	conf.NamespaceDefaults.Archival.Visibility.State = "disabled"
	conf.PublicClient.HostPort = frontend

	dyn := dynamicconfig.StaticClient{
		// The CLI's dev-server values: a larger mutable-state cache and
		// enough visibility RPS for the UI's list pages.
		dynamicconfig.HistoryCacheHostLevelMaxSize.Key():                 8096,
		dynamicconfig.FrontendMaxNamespaceVisibilityRPSPerInstance.Key(): 100,
	}
	for k, v := range cfg.DynamicConfig {
		dyn[dynamicconfig.MakeKey(k)] = v
	}

	return []temporal.ServerOption{
		temporal.WithConfig(&conf),
		temporal.ForServices(temporal.DefaultServices),
		temporal.WithStaticHosts(map[primitives.ServiceName]static.Hosts{
			primitives.FrontendService: static.SingleLocalHost(frontend),
			primitives.HistoryService:  static.SingleLocalHost(hostPort(p.history)),
			primitives.MatchingService: static.SingleLocalHost(hostPort(p.matching)),
			primitives.WorkerService:   static.SingleLocalHost(hostPort(p.worker)),
		}),
		temporal.WithLogger(logger),
		temporal.WithDynamicConfigClient(dyn),
	}
}

// newLogger builds the server's zap logger. The level is returned so that
// shutdown can silence it.
func newLogger(level string, out io.Writer) (log.Logger, zap.AtomicLevel, error) {
	lvl := zap.NewAtomicLevelAt(zapcore.ErrorLevel)
	if level != "" {
		l, err := zapcore.ParseLevel(level)
		if err != nil {
			return nil, lvl, fmt.Errorf("%w: log level: %w", ErrInvalidConfig, err)
		}
		lvl.SetLevel(l)
	}
	if out == nil {
		out = os.Stderr
	}
	enc := zapcore.NewConsoleEncoder(log.DefaultZapEncoderConfig)
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(out)), lvl)
	return log.NewZapLogger(zap.New(core)), lvl, nil
}

// namespaceList returns DefaultNamespace followed by the extra namespaces,
// without duplicates.
func namespaceList(extra []string) ([]string, error) {
	out := []string{DefaultNamespace}
	for _, ns := range extra {
		if ns == "" {
			return nil, fmt.Errorf("%w: empty namespace name", ErrInvalidConfig)
		}
		if !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	return out, nil
}

func (s *Stack) startUI(ctx context.Context, cfg Config) error {
	host := s.host
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // the UI joins host and port with a bare colon
	}
	s.ui = uiserver.NewServer(uiserveroptions.WithConfigProvider(&uiconfig.Config{
		Host: host,
		Port: s.uiPort,
		// The raw frontend, never the proxy: see the package doc.
		TemporalGRPCAddress: s.FrontendAddr(),
		EnableUI:            true,
		DefaultNamespace:    DefaultNamespace,
		Codec: uiconfig.Codec{
			Endpoint:           cfg.UICodecEndpoint,
			PassAccessToken:    cfg.UICodecPassAccessToken,
			IncludeCredentials: cfg.UICodecIncludeCredentials,
		},
		// Served over plain HTTP on loopback.
		CORS:     uiconfig.CORS{CookieInsecure: true},
		HideLogs: true,
		// A local dev stack makes no outbound calls of its own.
		DisableNewsFetch: true,
	}))
	s.uiDone = make(chan error, 1)
	go func() {
		// Start blocks until Stop; it returns nil on a clean close.
		s.uiDone <- s.ui.Start()
	}()

	// Stop must not race a Start that has not bound yet, so wait until the
	// UI answers before handing the stack out.
	url := s.UIAddr() + "/healthz"
	client := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("web ui health request: %w", err)
		}
		if resp, err := client.Do(req); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-s.uiDone:
			s.uiDone <- err // shutdown reads it again
			return fmt.Errorf("web ui exited during start: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("wait for web ui: %w", ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitFrontend returns once the raw frontend answers DescribeNamespace for
// every registered namespace.
func (s *Stack) waitFrontend(ctx context.Context) error {
	conn, err := grpc.NewClient(s.FrontendAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("dial frontend: %w", err)
	}
	defer func() { _ = conn.Close() }()
	client := workflowservice.NewWorkflowServiceClient(conn)
	for _, ns := range s.namespaces {
		for {
			callCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := client.DescribeNamespace(callCtx, &workflowservice.DescribeNamespaceRequest{Namespace: ns})
			cancel()
			if err == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("wait for frontend (namespace %q: %v): %w", ns, err, ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}
