package main

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"gopkg.in/yaml.v3"
)

// envPrefix prefixes the environment variable of every flag: --upstream-ca is BLINDFOLD_UPSTREAM_CA.
const envPrefix = "BLINDFOLD_"

// bindEnvAndConfig fills every flag not given on the command line from BLINDFOLD_<FLAG>, else from the YAML file
// configPath (if not empty). Unknown keys in the file are errors, so a typo never silently leaves a default in place.
func bindEnvAndConfig(fs *pflag.FlagSet, configPath string) error {
	file := map[string]yaml.Node{}
	if configPath != "" {
		data, err := os.ReadFile(configPath)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		var doc yaml.Node
		if err := yaml.Unmarshal(data, &doc); err != nil {
			return fmt.Errorf("config %s: %w", configPath, err)
		}
		if len(doc.Content) > 0 {
			root := doc.Content[0]
			if root.Kind != yaml.MappingNode {
				return fmt.Errorf("config %s: line %d: want a mapping of flag names to values", configPath, root.Line)
			}
			for i := 0; i+1 < len(root.Content); i += 2 {
				k, v := root.Content[i], root.Content[i+1]
				if fs.Lookup(k.Value) == nil || k.Value == "config" || k.Value == "help" {
					return fmt.Errorf("config %s: line %d: unknown key %q (keys are the flag names of this command)", configPath, k.Line, k.Value)
				}
				if _, dup := file[k.Value]; dup {
					return fmt.Errorf("config %s: line %d: key %q repeated", configPath, k.Line, k.Value)
				}
				file[k.Value] = *v
			}
		}
	}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || f.Name == "config" || f.Name == "help" {
			return
		}
		env := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				// pflag's message quotes the value; the value may be a secret.
				errs = append(errs, fmt.Errorf("$%s: invalid value for --%s (%s)", env, f.Name, f.Value.Type()))
			}
			return
		}
		n, ok := file[f.Name]
		if !ok {
			return
		}
		var values []string
		switch {
		case n.Kind == yaml.ScalarNode:
			values = []string{n.Value}
		case n.Kind == yaml.SequenceNode && strings.HasSuffix(f.Value.Type(), "Slice"):
			for _, c := range n.Content {
				if c.Kind != yaml.ScalarNode {
					errs = append(errs, fmt.Errorf("config %s: line %d: %s: want a list of plain values", configPath, c.Line, f.Name))
					return
				}
				values = append(values, c.Value)
			}
		default:
			errs = append(errs, fmt.Errorf("config %s: line %d: %s: want a single %s value", configPath, n.Line, f.Name, f.Value.Type()))
			return
		}
		for _, v := range values {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("config %s: line %d: invalid value for %s (%s)", configPath, n.Line, f.Name, f.Value.Type()))
				return
			}
		}
	})
	return errors.Join(errs...)
}

// newLogger builds the process logger: text or JSON on w, at level.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// isLoopbackAddr reports whether a listen address binds only loopback ("localhost" or a loopback IP). An empty host
// binds every interface.
func isLoopbackAddr(addr string) (bool, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false, fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "localhost" {
		return true, nil
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback(), nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
