package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/blindfold-dev/blindfold/proxy/xds"
)

func init() { rootCmd.AddCommand(newXDSCmd()) }

func newXDSCmd() *cobra.Command {
	var (
		listen, endpointsFile, portName, rbacFile, service, lb string
		replicasDNS                                            string
		healthCA, healthCert, healthKey, healthServerName      string
		tlsCert, tlsKey, tlsClientCA                           string
		replicas                                               []string
		healthInterval, fileInterval                           time.Duration
		unhealthy                                              int
		outlier                                                bool
		certProvider                                           string
		requireClientCert                                      bool
	)
	cmd := &cobra.Command{
		Use:   "xds",
		Short: "Serve xDS to load-balance Go workers over proxy replicas and push RBAC to xDS-enabled replicas",
		Long: `Serve the xDS control plane of a Blindfold proxy fleet.

Go workers and clients dial "xds:///<service>" (blank-import google.golang.org/grpc/xds and
point GRPC_XDS_BOOTSTRAP at a file from "blindfold xds bootstrap"); they spread calls over the
healthy replicas and move off a replica that stops. Other SDKs use the Kubernetes Service (DNS).

Replicas come from --replicas, from DNS (--replicas-dns, e.g. a headless Service), from a
Kubernetes Endpoints file (--endpoints-file, re-read when it changes), or register themselves
through the advertise address in their bootstrap. Each is probed with the gRPC health protocol
every --health-interval; unhealthy ones are left out.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log := slog.Default()
			cfg := xds.Config{
				Resources: xds.ResourceConfig{
					ServiceName: service,
					LBPolicy:    xds.LBPolicy(lb),
				},
				HealthInterval:     healthInterval,
				UnhealthyThreshold: unhealthy,
				Logger:             log,
			}
			if healthCA != "" {
				tc, err := healthTLS(healthCA, healthCert, healthKey, healthServerName)
				if err != nil {
					return err
				}
				cfg.HealthDialOptions = []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc))}
			}
			if tlsCert != "" {
				tc, err := serverTLS(tlsCert, tlsKey, tlsClientCA)
				if err != nil {
					return err
				}
				cfg.ServerOptions = append(cfg.ServerOptions, grpc.Creds(credentials.NewTLS(tc)))
			} else if listenIsPublic(listen) {
				log.Warn("xds server without TLS on a non-loopback address: anyone who reaches it learns the fleet", "listen", listen)
			}
			if outlier {
				cfg.Resources.OutlierDetection = &xds.OutlierDetection{}
			}
			if certProvider != "" {
				cfg.Resources.ServerTLS = &xds.ServerTLS{CertProviderInstance: certProvider, RequireClientCert: requireClientCert}
			}
			var rbacMod time.Time
			if rbacFile != "" {
				rules, err := xds.LoadRBAC(rbacFile)
				if err != nil {
					return err
				}
				cfg.Resources.RBAC = rules
				if fi, err := os.Stat(rbacFile); err == nil {
					rbacMod = fi.ModTime()
				}
			}
			s, err := xds.New(cfg)
			if err != nil {
				return err
			}
			defer s.Stop()
			if len(replicas) > 0 {
				if err := s.SetReplicas(xds.SourceStatic, replicas); err != nil {
					return err
				}
			}
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			if endpointsFile != "" {
				if err := s.WatchEndpointsFile(ctx, endpointsFile, portName, fileInterval); err != nil {
					return err
				}
			}
			if replicasDNS != "" {
				if err := s.WatchDNS(ctx, replicasDNS, healthInterval); err != nil {
					return err
				}
			}
			lis, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("listen for xds: %w", err)
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); _ = s.Run(ctx) }()
			if rbacFile != "" {
				wg.Add(1)
				go func() { defer wg.Done(); watchRBAC(ctx, s, rbacFile, rbacMod, fileInterval, log) }()
			}
			errc := make(chan error, 1)
			go func() { errc <- s.Serve(lis) }()
			select {
			case err = <-errc:
			case <-ctx.Done():
				s.Stop()
				err = <-errc
			}
			cancel()
			wg.Wait()
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&listen, "listen", ":18000", "address the xDS (ADS) server listens on")
	f.StringSliceVar(&replicas, "replicas", nil, "static replica addresses, ip:port (comma-separated or repeated)")
	f.StringVar(&replicasDNS, "replicas-dns", "", "host:port whose DNS name resolves to the replicas (e.g. a Kubernetes headless Service); re-resolved every health interval")
	f.StringVar(&endpointsFile, "endpoints-file", "", "Kubernetes Endpoints object (YAML or JSON) naming the replicas; re-read when it changes")
	f.StringVar(&portName, "endpoints-port-name", "grpc", "port of the Endpoints object to use (empty: its only port)")
	f.DurationVar(&fileInterval, "file-interval", 2*time.Second, "how often the endpoints and RBAC files are checked for changes")
	f.DurationVar(&healthInterval, "health-interval", 5*time.Second, "how often each replica's gRPC health is probed")
	f.IntVar(&unhealthy, "unhealthy-threshold", 2, "failed probes in a row before a replica is taken out")
	f.StringVar(&tlsCert, "tls-cert", "", "TLS certificate of the xDS server (empty: plaintext)")
	f.StringVar(&tlsKey, "tls-key", "", "TLS key of the xDS server")
	f.StringVar(&tlsClientCA, "tls-client-ca", "", "CA that clients' certificates must chain to (mTLS to the xDS server)")
	f.StringVar(&healthCA, "health-tls-ca", "", "CA to verify replicas with when probing them over TLS (replicas requiring mTLS need this)")
	f.StringVar(&healthCert, "health-tls-cert", "", "client certificate presented to replicas when probing them")
	f.StringVar(&healthKey, "health-tls-key", "", "client key for --health-tls-cert")
	f.StringVar(&healthServerName, "health-tls-server-name", "", "server name to verify in replicas' certificates (they are probed by IP)")
	f.StringVar(&rbacFile, "rbac", "", "RBAC rules file pushed to xDS-enabled replicas (YAML: rules: [{name, action, principals, methods}]); re-read when it changes")
	f.StringVar(&service, "service", "blindfold-proxy", `service name clients dial as "xds:///<service>"`)
	f.StringVar(&lb, "lb", string(xds.RoundRobin), "load-balancing policy: round_robin or ring_hash")
	f.BoolVar(&outlier, "outlier-detection", true, "eject replicas whose calls fail far more often than the others'")
	f.StringVar(&certProvider, "server-tls-provider", "", "certificate provider instance (from the replicas' bootstrap) for TLS on xDS-enabled replicas")
	f.BoolVar(&requireClientCert, "require-client-cert", false, "with --server-tls-provider: require client certificates (mTLS)")
	cmd.AddCommand(newXDSBootstrapCmd(), newXDSEnvoyEgressCmd())
	return cmd
}

// serverTLS builds the xDS server's TLS configuration, requiring client certificates when clientCA is set.
func serverTLS(certFile, keyFile, clientCA string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load xds server certificate: %w", err)
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCA != "" {
		ca, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, fmt.Errorf("read xds client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("xds client CA %s holds no PEM certificate", clientCA)
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// listenIsPublic reports whether a listen address is not loopback-only.
func listenIsPublic(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil || host == "" {
		return true
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// healthTLS builds the client TLS configuration for health probes.
func healthTLS(caFile, certFile, keyFile, serverName string) (*tls.Config, error) {
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("read health probe CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("health probe CA %s holds no PEM certificate", caFile)
	}
	tc := &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12}
	if certFile != "" || keyFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load health probe client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// watchRBAC re-reads the RBAC file when its modification time changes; a broken file is logged and the rules in force
// stay.
func watchRBAC(ctx context.Context, s *xds.Server, path string, last time.Time, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fi, err := os.Stat(path)
		if err != nil || fi.ModTime().Equal(last) {
			continue
		}
		last = fi.ModTime()
		rules, err := xds.LoadRBAC(path)
		if err == nil {
			err = s.SetRBAC(rules)
		}
		if err != nil {
			log.Error("keeping the RBAC rules in force", "file", path, "err", err)
			continue
		}
		log.Info("rbac rules reloaded", "file", path, "rules", len(rules.Rules))
	}
}

func newXDSBootstrapCmd() *cobra.Command {
	var cfg xds.BootstrapConfig
	var tlsCA, tlsCert, tlsKey string
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Print a grpc-go xDS bootstrap (for GRPC_XDS_BOOTSTRAP) for a worker or a replica",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tlsCA != "" {
				cfg.ControlPlaneTLS = &xds.BootstrapTLS{CAFile: tlsCA, CertFile: tlsCert, KeyFile: tlsKey}
			} else if tlsCert != "" || tlsKey != "" {
				return errors.New("--xds-tls-cert and --xds-tls-key need --xds-tls-ca")
			}
			b, err := xds.Bootstrap(cfg)
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ServerURI, "server", "", "the xDS server, host:port (required)")
	f.StringVar(&cfg.NodeID, "node", "", "this client's or replica's node id, e.g. the pod name (required)")
	f.StringVar(&cfg.AdvertiseAddr, "advertise", "", "for a replica: ip:port clients reach it at (it then registers itself)")
	f.StringVar(&cfg.CertDir, "cert-dir", "", "for a replica: directory with cert.pem, key.pem and ca.pem for TLS pushed by the control plane")
	f.StringVar(&tlsCA, "xds-tls-ca", "", "CA file to verify the xDS server with (empty: plaintext to the xDS server)")
	f.StringVar(&tlsCert, "xds-tls-cert", "", "client certificate for mTLS to the xDS server")
	f.StringVar(&tlsKey, "xds-tls-key", "", "client key for mTLS to the xDS server")
	return cmd
}

func newXDSEnvoyEgressCmd() *cobra.Command {
	var cfg xds.EgressConfig
	cmd := &cobra.Command{
		Use:   "envoy-egress",
		Short: "Print the Envoy sidecar configuration for the proxy's single outbound path to the Temporal frontend",
		Long: `Print an Envoy bootstrap (YAML) with one listener on loopback for the proxy and one cluster,
the Temporal frontend, reached over TLS (or mTLS with --client-cert/--client-key). Point the
proxy's upstream at --listen. The output is validated against Envoy's proto rules.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := xds.EnvoyEgressBootstrap(cfg)
			if err != nil {
				return err
			}
			y, err := xds.MarshalYAML(b)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "# Generated by `blindfold xds envoy-egress` (proxy/xds.EnvoyEgressBootstrap); do not edit.\n%s", strings.TrimLeft(string(y), "\n"))
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Backend, "backend", "", "the Temporal frontend, host:port (required)")
	f.StringVar(&cfg.ListenAddr, "listen", "127.0.0.1:7234", "where Envoy accepts the proxy's connection (keep it on loopback)")
	f.StringVar(&cfg.SNI, "sni", "", "server name to send and verify (default: the backend's host)")
	f.StringVar(&cfg.CAFile, "ca", "", "CA bundle for the backend's certificate (default: the system bundle)")
	f.StringVar(&cfg.ClientCertFile, "client-cert", "", "client certificate for mTLS to the backend")
	f.StringVar(&cfg.ClientKeyFile, "client-key", "", "client key for mTLS to the backend")
	f.BoolVar(&cfg.Plaintext, "plaintext", false, "no TLS to the backend (only over a private link that terminates TLS itself)")
	f.StringVar(&cfg.AdminAddr, "admin", "127.0.0.1:9901", "Envoy admin address (keep it on loopback)")
	return cmd
}
