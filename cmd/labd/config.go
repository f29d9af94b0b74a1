package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A config file (`labd serve --config labd.yaml`, or LABD_CONFIG) holds
// labd serve's settings by flag name:
//
//	addr: 0.0.0.0:8080
//	data: /var/lib/labd
//	trusted-proxy: [10.0.0.2, 10.0.0.3]
//
// A setting on the command line wins over the file, the file over the
// environment, the environment over the default.

// maxConfig bounds the file: settings, not data.
const maxConfig = 1 << 20

// configPath is the --config argument of args, else LABD_CONFIG.
func configPath(args []string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		for _, p := range []string{"--config=", "-config="} {
			if v, ok := strings.CutPrefix(a, p); ok {
				return v
			}
		}
		if (a == "--config" || a == "-config") && i+1 < len(args) {
			return args[i+1]
		}
	}
	return os.Getenv("LABD_CONFIG")
}

// applyConfig sets fs's flags from the config file at path. Each problem
// names the file and line.
func applyConfig(fs *flag.FlagSet, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxConfig+1))
	if err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if len(b) > maxConfig {
		return fmt.Errorf("config %s: larger than %d bytes", path, maxConfig)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil // empty file
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d: a config is a mapping of setting: value lines", path, m.Line)
	}
	var errs []error
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		fl := fs.Lookup(k.Value)
		if fl == nil || k.Value == "config" {
			errs = append(errs, fmt.Errorf("%s:%d: unknown setting %q (the settings are labd serve's flags: labd serve -h)", path, k.Line, k.Value))
			continue
		}
		var values []string
		switch v.Kind {
		case yaml.ScalarNode:
			values = []string{v.Value}
		case yaml.SequenceNode:
			for _, it := range v.Content {
				if it.Kind != yaml.ScalarNode {
					errs = append(errs, fmt.Errorf("%s:%d: %s: a list of values, each one line", path, it.Line, k.Value))
					continue
				}
				values = append(values, it.Value)
			}
		default:
			errs = append(errs, fmt.Errorf("%s:%d: %s: want a value or a list of values", path, v.Line, k.Value))
			continue
		}
		for _, val := range values {
			if err := fs.Set(k.Value, val); err != nil {
				errs = append(errs, fmt.Errorf("%s:%d: %s: %w", path, k.Line, k.Value, err))
			}
		}
	}
	return errors.Join(errs...)
}

func init() {
	register("config", command{
		summary: "check a config file of labd serve without starting it: labd config check FILE",
		run:     runConfig,
	})
}

func runConfig(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) != 2 || args[0] != "check" {
		fmt.Fprintln(stderr, "usage: labd config check FILE")
		return exitError{2}
	}
	c, err := parseServeFlags([]string{"--config", args[1]}, io.Discard)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError{1}
	}
	if st, err := os.Stat(c.content); err != nil || !st.IsDir() {
		fmt.Fprintf(stderr, "%s: content directory %s is not a directory\n", args[1], c.content)
		return exitError{1}
	}
	fmt.Fprintf(stdout, "%s: ok (labd serve on %s, content %s, data %s)\n", args[1], c.addr, c.content, c.data)
	return nil
}
