package app

import "net"

// siteURL is the http URL of path on the listen address addr, with an
// unspecified host (0.0.0.0, ::) spelled localhost so that it can be
// opened on the machine.
func siteURL(addr, path string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr + path
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, port) + path
}
