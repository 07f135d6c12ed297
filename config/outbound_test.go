package config

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDKIMKeys(t *testing.T) {
	dir := t.TempDir()
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(edKey)
	ed := writePEM(t, dir, "ed.pem", "PRIVATE KEY", der)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsa1 := writePEM(t, dir, "rsa1.pem", "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))
	der, _ = x509.MarshalPKCS8PrivateKey(rsaKey)
	rsa8 := writePEM(t, dir, "rsa8.pem", "PRIVATE KEY", der)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ = x509.MarshalPKCS8PrivateKey(ecKey)
	ec := writePEM(t, dir, "ec.pem", "PRIVATE KEY", der)
	garbage := filepath.Join(dir, "garbage.pem")
	os.WriteFile(garbage, []byte("not a key\n"), 0o600)

	src := `outbound:
  dkim:
    - domain: acme.test
      selector: s1
      private_key_file: ` + ed + `
    - domain: rsa1.test
      selector: s1
      private_key_file: ` + rsa1 + `
    - domain: rsa8.test
      selector: s1
      private_key_file: ` + rsa8 + `
      headers: [From, Subject]
`
	c, err := Parse("d.yaml", []byte(src))
	if err != nil {
		t.Fatalf("valid DKIM configuration: %v", err)
	}
	if !slices.Equal(c.Outbound.DKIM[0].Headers, DefaultDKIMHeaders) || !slices.Equal(c.Outbound.DKIM[2].Headers, []string{"From", "Subject"}) {
		t.Errorf("headers: %v / %v", c.Outbound.DKIM[0].Headers, c.Outbound.DKIM[2].Headers)
	}
	for _, d := range c.Outbound.DKIM {
		if _, err := d.LoadKey(); err != nil {
			t.Errorf("%s: %v", d.Domain, err)
		}
	}

	bad := `outbound:
  dkim:
    - domain: missing.test
      selector: s1
      private_key_file: ` + filepath.Join(dir, "nope.pem") + `
    - domain: garbage.test
      selector: s1
      private_key_file: ` + garbage + `
    - domain: ec.test
      selector: s1
      private_key_file: ` + ec + `
    - domain: nofrom.test
      selector: ""
      private_key_file: ` + ed + `
      headers: [Subject]
    - domain: acme.test
      selector: s1
      private_key_file: ` + ed + `
    - domain: ACME.test
      selector: s1
      private_key_file: ` + ed + `
`
	_, err = Parse("d.yaml", []byte(bad))
	if err == nil {
		t.Fatal("bad DKIM keys accepted")
	}
	got := err.Error()
	for _, w := range []string{
		"d.yaml:5: outbound.dkim[0].private_key_file: cannot read dkim key " + filepath.Join(dir, "nope.pem") + ": no such file or directory",
		"d.yaml:8: outbound.dkim[1].private_key_file: dkim key " + garbage + ": no PEM block",
		"d.yaml:11: outbound.dkim[2].private_key_file: dkim key " + ec + ": ECDSA keys cannot sign DKIM",
		"d.yaml:13: outbound.dkim[3].selector: \"\" must be a DNS label",
		"d.yaml:15: outbound.dkim[3].headers: must include From",
		"d.yaml:19: outbound.dkim[5].domain: domain acme.test is also configured at line 16",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in:\n%s", w, got)
		}
	}
	keyText, _ := os.ReadFile(ed)
	if body := strings.Split(string(keyText), "\n")[1]; strings.Contains(got, body[:16]) {
		t.Errorf("key material in the message:\n%s", got)
	}
}

func TestChannelRelay(t *testing.T) {
	src := `outbound:
  relay: smtp.example.com:587
channels:
  - name: eu
    addresses: [support@eu.test]
    relay:
      address: smtp.eu.test:465
      tls: implicit
      username: eu
      password: env:DM_TEST_EU_RELAY
  - name: us
    addresses: [support@us.test]
`
	t.Setenv("DM_TEST_EU_RELAY", "pw")
	c, err := Parse("r.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Channels[0].Relay
	if r == nil || r.Address != "smtp.eu.test:465" || r.TLS != "implicit" || r.Connections != 4 || c.Channels[1].Relay != nil {
		t.Fatalf("relay: %+v", r)
	}
	bad := `outbound:
  relay: smtp.example.com
  tls: ssl
channels:
  - name: eu
    addresses: [support@eu.test]
    relay:
      address: smtp.eu.test
      tls: sometimes
      username: eu
  - name: us
    addresses: [support@us.test]
    relay:
      tls: none
`
	_, err = Parse("r.yaml", []byte(bad))
	if err == nil {
		t.Fatal("bad relays accepted")
	}
	got := err.Error()
	for _, w := range []string{
		`r.yaml:2: outbound.relay: "smtp.example.com" must be host:port`,
		`r.yaml:3: outbound.tls: "ssl" must be starttls, implicit or none`,
		`r.yaml:8: channels[0].relay.address: "smtp.eu.test" must be host:port`,
		`r.yaml:9: channels[0].relay.tls: "sometimes" must be`,
		`r.yaml:10: channels[0].relay.username: username eu needs a password`,
		`r.yaml:13: channels[1].relay.address: missing: the relay's host:port`,
	} {
		if !strings.Contains(got, w) {
			t.Errorf("missing %q in:\n%s", w, got)
		}
	}
}
