// Package metricopt holds the options that the public collectors (sqlcount,
// fdstat) share: the namespace of their metric names and constant labels.
// Each package re-exports Option under its own name, with its own
// WithNamespace and WithConstLabels.
package metricopt

import "github.com/prometheus/client_golang/prometheus"

// Options are what a collector's options set.
type Options struct {
	Namespace   string            // first part of the metric names; "" for none
	ConstLabels prometheus.Labels // added to every series
}

// Option configures a collector.
type Option func(*Options)

// Namespace sets Options.Namespace.
func Namespace(namespace string) Option {
	return func(o *Options) { o.Namespace = namespace }
}

// ConstLabels sets Options.ConstLabels.
func ConstLabels(labels prometheus.Labels) Option {
	return func(o *Options) { o.ConstLabels = labels }
}

// Apply returns the Options that opts set, from defaultNamespace and no
// labels.
func Apply(defaultNamespace string, opts []Option) Options {
	o := Options{Namespace: defaultNamespace}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}
