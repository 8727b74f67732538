// Package metricopt holds what the public collectors' options (sqlcount,
// fdstat) set: the namespace of their metric names and constant labels.
// Each package declares an Option type of its own over Func, with its own
// WithNamespace and WithConstLabels, so that one package's option does not
// compile where another's is wanted.
package metricopt

import "github.com/prometheus/client_golang/prometheus"

// Options are what a collector's options set.
type Options struct {
	Namespace   string            // first part of the metric names; "" for none
	ConstLabels prometheus.Labels // added to every series
}

// Func is what each package's Option type is defined as.
type Func = func(*Options)

// Namespace sets Options.Namespace.
func Namespace(namespace string) Func {
	return func(o *Options) { o.Namespace = namespace }
}

// ConstLabels sets Options.ConstLabels.
func ConstLabels(labels prometheus.Labels) Func {
	return func(o *Options) { o.ConstLabels = labels }
}

// Apply returns the Options that opts set, from defaultNamespace and no
// labels.
func Apply[O ~func(*Options)](defaultNamespace string, opts []O) Options {
	o := Options{Namespace: defaultNamespace}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	return o
}
