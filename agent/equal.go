package agent

import (
	"fmt"
	"reflect"
	"slices"

	"github.com/prometheus/prometheus/model/relabel"
)

// sameContent reports whether a and b, two values of one configuration
// type, hold the same content, like reflect.DeepEqual (func values are
// equal only when both are nil, NaN differs from itself), but without
// DeepEqual's bookkeeping of visited pointers: configuration values have no
// cycles, and pointers shared by both sides (compiled regexes cached by the
// translation, jobs reused from the previous apply) are equal without a
// look inside; compiled regexes are equal when their expressions are. At
// 10,000 jobs this is what keeps an unchanged snapshot
// cheap (see BenchmarkApplyUnchanged5000ServiceMonitors). Below maxDepth
// levels it hands over to reflect.DeepEqual, which handles cycles.
func sameContent[T any](a, b T) bool {
	return equalValue(reflect.ValueOf(&a).Elem(), reflect.ValueOf(&b).Elem(), 0)
}

const maxDepth = 64

var (
	// regexpPtrType is the compiled regex type of relabel rules
	// (github.com/grafana/regexp).
	regexpPtrType  = reflect.TypeFor[relabel.Regexp]().Field(0).Type
	relabelPtrType = reflect.TypeFor[*relabel.Config]()
)

// equalRelabel compares relabel rules field by field: a job has a dozen of
// them, so this is the hot path of a comparison.
func equalRelabel(a, b *relabel.Config) bool {
	return a.Separator == b.Separator && a.TargetLabel == b.TargetLabel && a.Replacement == b.Replacement &&
		a.Action == b.Action && a.Modulus == b.Modulus && a.NameValidationScheme == b.NameValidationScheme &&
		slices.Equal(a.SourceLabels, b.SourceLabels) && (a.Regex.Regexp == nil) == (b.Regex.Regexp == nil) &&
		(a.Regex.Regexp == b.Regex.Regexp || a.Regex.Regexp.String() == b.Regex.Regexp.String())
}

func equalValue(a, b reflect.Value, depth int) bool {
	if depth > maxDepth {
		return a.CanInterface() && b.CanInterface() && reflect.DeepEqual(a.Interface(), b.Interface())
	}
	depth++
	switch a.Kind() {
	case reflect.Pointer:
		if a.UnsafePointer() == b.UnsafePointer() {
			return true
		}
		if a.IsNil() || b.IsNil() {
			return false
		}
		if a.CanInterface() {
			switch a.Type() {
			case regexpPtrType:
				return a.Interface().(fmt.Stringer).String() == b.Interface().(fmt.Stringer).String()
			case relabelPtrType:
				return equalRelabel(a.Interface().(*relabel.Config), b.Interface().(*relabel.Config))
			}
		}
		return equalValue(a.Elem(), b.Elem(), depth)
	case reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		if a.Elem().Type() != b.Elem().Type() {
			return false
		}
		return equalValue(a.Elem(), b.Elem(), depth)
	case reflect.Struct:
		for i := range a.NumField() {
			if !equalValue(a.Field(i), b.Field(i), depth) {
				return false
			}
		}
		return true
	case reflect.Slice:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		if a.Len() == 0 || a.UnsafePointer() == b.UnsafePointer() {
			return true
		}
		return equalElems(a, b, depth)
	case reflect.Array:
		return equalElems(a, b, depth)
	case reflect.Map:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		if a.UnsafePointer() == b.UnsafePointer() {
			return true
		}
		for it := a.MapRange(); it.Next(); {
			bv := b.MapIndex(it.Key())
			if !bv.IsValid() || !equalValue(it.Value(), bv, depth) {
				return false
			}
		}
		return true
	case reflect.Func:
		return a.IsNil() && b.IsNil()
	case reflect.String:
		return a.String() == b.String()
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return a.Uint() == b.Uint()
	case reflect.Float32, reflect.Float64:
		return a.Float() == b.Float()
	case reflect.Complex64, reflect.Complex128:
		return a.Complex() == b.Complex()
	case reflect.Chan, reflect.UnsafePointer:
		return a.UnsafePointer() == b.UnsafePointer()
	}
	return false
}

func equalElems(a, b reflect.Value, depth int) bool {
	for i := range a.Len() {
		if !equalValue(a.Index(i), b.Index(i), depth) {
			return false
		}
	}
	return true
}
