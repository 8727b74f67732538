package deploy_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	kyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// k8sScheme knows every kind the manifests use: core, apps and policy
// (PodDisruptionBudget) from k8s.io/api, ServiceMonitor and PrometheusRule
// from prometheus-operator.
var k8sScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme, monitoringv1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// k8sDecoder is apimachinery's strict YAML serializer, the decoder behind
// the API server's strict field validation: an unknown or duplicate field
// is an error naming its path, a kind the scheme does not know is an error.
var k8sDecoder = kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, k8sScheme, k8sScheme,
	kjson.SerializerOptions{Yaml: true, Strict: true})

// k8sObject is a decoded manifest: its typed object and its name.
type k8sObject interface {
	runtime.Object
	metav1.Object
}

// renderKustomize renders a kustomize directory of the repository with
// kubectl kustomize, the way kubectl apply -k would see it.
func renderKustomize(t testing.TB, elem ...string) []byte {
	t.Helper()
	return renderKustomizeDir(t, repoPath(t, elem...))
}

func renderKustomizeDir(t testing.TB, dir string) []byte {
	t.Helper()
	cmd := exec.Command(tool(t, "KUBECTL", "kubectl"), "kustomize", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	return out
}

// decodeManifests splits a multi-document YAML stream and strictly decodes
// each document into the typed object of its kind.
func decodeManifests(stream []byte) ([]k8sObject, error) {
	r := kyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	var out []k8sObject
	for i := 0; ; i++ {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, gvk, err := k8sDecoder.Decode(doc, nil, nil)
		if err != nil {
			kind := "?"
			if gvk != nil {
				kind = gvk.Kind
			}
			return nil, fmt.Errorf("document %d (%s): %w", i, kind, err)
		}
		o, ok := obj.(k8sObject)
		if !ok {
			return nil, fmt.Errorf("document %d: %T has no metadata", i, obj)
		}
		out = append(out, o)
	}
}

// mustDecodeManifests renders a kustomize directory and strictly decodes
// every object in it.
func mustDecodeManifests(t testing.TB, elem ...string) []k8sObject {
	t.Helper()
	objs, err := decodeManifests(renderKustomize(t, elem...))
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v", repoPath(t, elem...), err)
	}
	return objs
}

// findObject returns the object of type T named name.
func findObject[T k8sObject](t testing.TB, objs []k8sObject, name string) T {
	t.Helper()
	for _, o := range objs {
		if v, ok := o.(T); ok && o.GetName() == name {
			return v
		}
	}
	var zero T
	t.Fatalf("no %T named %q among the rendered manifests", zero, name)
	return zero
}
