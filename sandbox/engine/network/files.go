package network

import (
	"bytes"
	"net/netip"
)

// hostsHeader is the fixed part of the /etc/hosts dockerd writes.
const hostsHeader = "127.0.0.1\tlocalhost\n" +
	"::1\tlocalhost ip6-localhost ip6-loopback\n" +
	"fe00::0\tip6-localnet\n" +
	"ff00::0\tip6-mcastprefix\n" +
	"ff02::1\tip6-allnodes\n" +
	"ff02::2\tip6-allrouters\n"

// HostsFile returns /etc/hosts as dockerd writes it for a container: the
// localhost entries, then "<ip>\t<hostname>" when the container has an
// address (none for NetworkMode "none").
func HostsFile(hostname string, ip netip.Addr) []byte {
	var b bytes.Buffer
	b.WriteString(hostsHeader)
	if ip.IsValid() && hostname != "" {
		b.WriteString(ip.String() + "\t" + hostname + "\n")
	}
	return b.Bytes()
}

// HostnameFile returns /etc/hostname: the hostname and a newline.
func HostnameFile(hostname string) []byte {
	return []byte(hostname + "\n")
}

// ResolvConf returns what dockerd writes to a bridge container's
// /etc/resolv.conf when the host's resolv.conf has no usable (non-loopback)
// nameserver: an empty file plus its default servers, byte for byte
// (leading newline, no trailing one). labd never gives containers a route to
// those servers: the bytes are there so tools that parse the file behave as
// under Docker, and lookups fail fast with "network unreachable".
func ResolvConf() []byte {
	return []byte("\nnameserver 8.8.8.8\nnameserver 8.8.4.4")
}
