package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Issuer signs registry tokens with an ECDSA P-256 key (ES256). The
// registry trusts the key through a JWKS file naming it by key ID.
type Issuer struct {
	Name    string        // "iss" claim; the registry config's auth.token.issuer
	Service string        // "aud" claim; the registry config's auth.token.service
	TTL     time.Duration // token lifetime

	key    *ecdsa.PrivateKey
	kid    string
	signer jose.Signer
}

// LoadOrCreateKey reads the PEM private key at path, creating it (0600)
// on first use, and returns an Issuer for it.
func LoadOrCreateKey(path, name, service string, ttl time.Duration) (*Issuer, error) {
	key, err := loadKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		key, err = createKey(path)
	}
	if err != nil {
		return nil, err
	}
	jwk := jose.JSONWebKey{Key: &key.PublicKey}
	thumb, err := jwk.Thumbprint(cryptoSHA256)
	if err != nil {
		return nil, fmt.Errorf("token key thumbprint: %w", err)
	}
	kid := b64(thumb)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		return nil, fmt.Errorf("token signer: %w", err)
	}
	return &Issuer{Name: name, Service: service, TTL: ttl, key: key, kid: kid, signer: signer}, nil
}

func loadKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("token key %s: no PEM block", path)
	}
	key, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("token key %s: %w", path, err)
	}
	return key, nil
}

func createKey(path string) (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate token key: %w", err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode token key: %w", err)
	}
	if err := writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, fmt.Errorf("save token key: %w", err)
	}
	return key, nil
}

// WriteJWKS writes the public key as the JSON Web Key Set the registry's
// token access controller loads (its "jwks" option).
func (i *Issuer) WriteJWKS(path string) error {
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &i.key.PublicKey, KeyID: i.kid, Algorithm: string(jose.ES256), Use: "sig",
	}}}
	b, err := json.Marshal(set)
	if err != nil {
		return fmt.Errorf("encode jwks: %w", err)
	}
	if err := writeFileAtomic(path, b, 0o644); err != nil {
		return fmt.Errorf("save jwks: %w", err)
	}
	return nil
}

// Issue signs a token for subject ("" for anonymous) granting access.
func (i *Issuer) Issue(subject string, access []*token.ResourceActions, now time.Time) (string, error) {
	if access == nil {
		access = []*token.ResourceActions{}
	}
	jti := make([]byte, 16)
	rand.Read(jti)
	claims := token.ClaimSet{
		Issuer:     i.Name,
		Subject:    subject,
		Audience:   token.AudienceList{i.Service},
		Expiration: now.Add(i.TTL).Unix(),
		NotBefore:  now.Add(-time.Second).Unix(),
		IssuedAt:   now.Unix(),
		JWTID:      b64(jti),
		Access:     access,
	}
	s, err := jwt.Signed(i.signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// refreshClaims are a refresh token's claims. Its audience is not the
// registry's service, so the registry never takes it as an access token.
type refreshClaims struct {
	jwt.Claims
	Stamp string `json:"stamp"`
}

// RefreshAudience is the "aud" of refresh tokens.
func (i *Issuer) RefreshAudience() string { return i.Service + "/refresh" }

// IssueRefresh signs a refresh token (Docker's identity token) for
// subject, valid for ttl while the account's stamp stays the same.
func (i *Issuer) IssueRefresh(subject, stamp string, now time.Time, ttl time.Duration) (string, error) {
	jti := make([]byte, 16)
	rand.Read(jti)
	c := refreshClaims{Claims: jwt.Claims{
		Issuer: i.Name, Subject: subject, Audience: jwt.Audience{i.RefreshAudience()},
		IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-time.Second)),
		Expiry: jwt.NewNumericDate(now.Add(ttl)), ID: b64(jti),
	}, Stamp: stamp}
	s, err := jwt.Signed(i.signer).Claims(c).Serialize()
	if err != nil {
		return "", fmt.Errorf("sign refresh token: %w", err)
	}
	return s, nil
}

// ErrBadRefresh means a refresh token is malformed, forged, expired or
// not one of this issuer's.
var ErrBadRefresh = errors.New("invalid refresh token")

// VerifyRefresh checks a refresh token's signature, issuer, audience and
// expiry and returns its subject and stamp.
func (i *Issuer) VerifyRefresh(tok string, now time.Time) (subject, stamp string, err error) {
	parsed, err := jwt.ParseSigned(tok, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		return "", "", ErrBadRefresh
	}
	var c refreshClaims
	if err := parsed.Claims(&i.key.PublicKey, &c); err != nil {
		return "", "", ErrBadRefresh
	}
	if err := c.ValidateWithLeeway(jwt.Expected{Issuer: i.Name, AnyAudience: jwt.Audience{i.RefreshAudience()}, Time: now}, 0); err != nil {
		return "", "", ErrBadRefresh
	}
	if c.Subject == "" || c.Stamp == "" {
		return "", "", ErrBadRefresh
	}
	return c.Subject, c.Stamp, nil
}
