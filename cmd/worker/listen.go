package main

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

// listen listens on one --web.listen-address as exporter-toolkit's
// web.ListenAndServe does (TCP, or vsock for vsock://:PORT), but before
// serving: ListenAndServe only returns once serving ends, so a port in use
// would show only after the database opened. The listeners are then served
// by web.ServeMultiple, with the same TLS and basic auth.
func listen(addr string) (net.Listener, error) {
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
