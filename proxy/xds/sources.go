package xds

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"sigs.k8s.io/yaml"
)

// endpointsObject is the part of a Kubernetes Endpoints object (core/v1) the file source reads.
type endpointsObject struct {
	Kind    string `json:"kind"`
	Subsets []struct {
		Addresses []struct {
			IP string `json:"ip"`
		} `json:"addresses"`
		Ports []struct {
			Name string `json:"name"`
			Port int    `json:"port"`
		} `json:"ports"`
	} `json:"subsets"`
}

// ParseEndpoints reads the ready addresses of a Kubernetes Endpoints object (YAML or JSON, e.g. the output of
// `kubectl get endpoints blindfold -o yaml`) as ip:port, taking the port named portName (or the only port when
// portName is empty). notReadyAddresses are left out: Kubernetes' own readiness already excluded them.
func ParseEndpoints(b []byte, portName string) ([]string, error) {
	var ep endpointsObject
	if err := yaml.Unmarshal(b, &ep); err != nil {
		return nil, fmt.Errorf("%w: parse endpoints: %v", ErrConfig, err)
	}
	// Requiring the kind also refuses an empty or truncated file, which would otherwise read as "no replicas".
	if ep.Kind != "Endpoints" {
		return nil, fmt.Errorf("%w: endpoints file holds kind %q, not an Endpoints object", ErrConfig, ep.Kind)
	}
	var out []string
	for i, ss := range ep.Subsets {
		port := 0
		for _, p := range ss.Ports {
			if p.Name == portName || (portName == "" && len(ss.Ports) == 1) {
				port = p.Port
			}
		}
		if port <= 0 || port > 65535 {
			return nil, fmt.Errorf("%w: endpoints subset %d has no port named %q", ErrConfig, i, portName)
		}
		for _, a := range ss.Addresses {
			if net.ParseIP(a.IP) == nil {
				return nil, fmt.Errorf("%w: endpoints subset %d: %q is not an IP address", ErrConfig, i, a.IP)
			}
			out = append(out, net.JoinHostPort(a.IP, strconv.Itoa(port)))
		}
	}
	return out, nil
}

// WatchEndpointsFile makes the replicas named by a Kubernetes Endpoints file (see ParseEndpoints) a source, reading it
// now and then every interval until ctx ends. Polling the content, rather than watching inotify events, also catches
// the symlink swaps of a mounted ConfigMap. A file that later fails to parse is logged and the last good list kept.
func (s *Server) WatchEndpointsFile(ctx context.Context, path, portName string, interval time.Duration) error {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	source := "file:" + path
	load := func() ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read endpoints file: %w", err)
		}
		addrs, err := ParseEndpoints(b, portName)
		if err != nil {
			return nil, fmt.Errorf("endpoints file %s: %w", path, err)
		}
		if err := s.SetReplicas(source, addrs); err != nil {
			return nil, fmt.Errorf("endpoints file %s: %w", path, err)
		}
		return b, nil
	}
	last, err := load()
	if err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			b, err := os.ReadFile(path)
			if err == nil && bytes.Equal(b, last) {
				continue
			}
			last = b // a bad file is reported once, not at every tick
			if _, err := load(); err != nil {
				s.log.Warn("keeping the previous replica list", "err", err)
				continue
			}
			s.log.Info("endpoints file reloaded", "path", path)
		}
	}()
	return nil
}

// WatchDNS makes the addresses a DNS name resolves to (with port from hostport) a source, resolving now and then every
// interval until ctx ends. Pointed at a Kubernetes headless Service it yields one address per ready pod, and every
// control-plane replica sees the same fleet without access to the Kubernetes API. A failed lookup keeps the last list.
func (s *Server) WatchDNS(ctx context.Context, hostport string, interval time.Duration) error {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("%w: dns replica source %q is not host:port", ErrConfig, hostport)
	}
	if interval <= 0 {
		interval = 5 * time.Second
	}
	source := "dns:" + hostport
	resolve := func() error {
		lctx, cancel := context.WithTimeout(ctx, interval)
		defer cancel()
		ips, err := net.DefaultResolver.LookupIPAddr(lctx, host)
		if err != nil {
			return fmt.Errorf("resolve replicas %s: %w", host, err)
		}
		addrs := make([]string, 0, len(ips))
		for _, ip := range ips {
			addrs = append(addrs, net.JoinHostPort(ip.IP.String(), port))
		}
		return s.SetReplicas(source, addrs)
	}
	if err := resolve(); err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := resolve(); err != nil && ctx.Err() == nil {
				s.log.Warn("keeping the previous replica list", "err", err)
			}
		}
	}()
	return nil
}
