// Command credentials writes the secrets that the basic-auth overlay
// (deploy/kubernetes-basic-auth) needs and that git does not hold, so that
// the overlay cannot be applied with a password anyone can read here:
//
//	go run ./deploy/kubernetes-basic-auth/credentials [-dir DIR] [-force]
//
// It draws a random password for each of the users "probe" and
// "prometheus", and writes, mode 0600, in DIR:
//
//   - web.yml: the web config, TLS and the two users' bcrypt hashes;
//   - scrape.env: username= and password= of the Secret worker-scrape, which
//     the ServiceMonitor reads;
//   - probe.env: authorization=, the probes' "Basic ..." header.
//
// It refuses to overwrite them without -force: new passwords lock out the
// Prometheus and the probes that have the old ones.
package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/crypto/bcrypt"
)

// Files are the names of the files written, as the overlay's
// kustomization.yaml names them.
var Files = []string{"web.yml", "scrape.env", "probe.env"}

const webConfig = `# Written by deploy/kubernetes-basic-auth/credentials; not in git.
# exporter-toolkit web config: TLS as deploy/kubernetes-tls, plus basic auth.
tls_server_config:
  cert_file: /etc/worker-tls/tls.crt
  key_file: /etc/worker-tls/tls.key
basic_auth_users:
  probe: %s
  prometheus: %s
`

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "credentials:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("credentials", flag.ContinueOnError)
	dir := fs.String("dir", "deploy/kubernetes-basic-auth", "the overlay's directory")
	force := fs.Bool("force", false, "overwrite existing files (new passwords: the old ones stop working)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !*force {
		for _, f := range Files {
			if _, err := os.Stat(filepath.Join(*dir, f)); err == nil {
				return fmt.Errorf("%s exists; -force writes new passwords, which lock out whoever has the old ones", filepath.Join(*dir, f))
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	probe, scrape := rand.Text(), rand.Text()
	probeHash, err := bcrypt.GenerateFromPassword([]byte(probe), bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	scrapeHash, err := bcrypt.GenerateFromPassword([]byte(scrape), bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	contents := map[string]string{
		"web.yml":    fmt.Sprintf(webConfig, probeHash, scrapeHash),
		"scrape.env": "username=prometheus\npassword=" + scrape + "\n",
		"probe.env":  "authorization=Basic " + base64.StdEncoding.EncodeToString([]byte("probe:"+probe)) + "\n",
	}
	for _, f := range Files {
		if err := os.WriteFile(filepath.Join(*dir, f), []byte(contents[f]), 0o600); err != nil {
			return fmt.Errorf("cannot write credentials: %w", err)
		}
	}
	fmt.Fprintf(stdout, "wrote %s, %s and %s in %s (mode 0600, not in git)\n", Files[0], Files[1], Files[2], *dir)
	return nil
}
