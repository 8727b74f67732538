package web

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/mdlayher/vsock"
)

// vsockScheme starts a --web.listen-address that listens on vsock, as
// exporter-toolkit's ListenAndServe reads it: vsock://:PORT.
const vsockScheme = "vsock://"

// Listen listens on one --web.listen-address as exporter-toolkit's
// ListenAndServe does (TCP, or vsock for vsock://[CID]:PORT), but before
// serving: ListenAndServe only returns once serving ends, so a port in use
// would show only after the database opened. Serve then serves the
// listeners, with the same TLS and basic auth. Its errors do not repeat
// addr.
func Listen(addr string) (net.Listener, error) {
	if strings.HasPrefix(addr, vsockScheme) {
		port, err := vsockPort(addr)
		if err != nil {
			return nil, err
		}
		l, err := vsock.Listen(port, nil)
		if err != nil {
			return nil, fmt.Errorf("vsock: %w", unwrapOp(err))
		}
		return l, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, unwrapOp(err)
	}
	return l, nil
}

// CheckListenAddress returns an error for a vsock:// address whose port
// Listen cannot read; other addresses are checked by listening.
func CheckListenAddress(addr string) error {
	if !strings.HasPrefix(addr, vsockScheme) {
		return nil
	}
	_, err := vsockPort(addr)
	return err
}

// vsockPort parses vsock://[CID]:PORT as exporter-toolkit does: the port
// is what it listens on, on any CID.
func vsockPort(addr string) (uint32, error) {
	u, err := url.Parse(addr)
	if err != nil {
		return 0, err
	}
	_, p, err := net.SplitHostPort(u.Host)
	if err != nil {
		return 0, err
	}
	port, err := strconv.ParseUint(p, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("vsock port %q: want a number", p)
	}
	return uint32(port), nil
}

// unwrapOp drops the "listen tcp ADDR:" prefix of a *net.OpError, whose
// address the caller's message already names.
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return op.Err
	}
	return err
}
