package datavolume

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/api/meta"
	metatable "k8s.io/apimachinery/pkg/api/meta/table"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
)

// tableConvertor prints DataVolumes for kubectl get: NAME, PHASE, PROGRESS,
// RESTARTS, AGE, as CDI does.
type tableConvertor struct{}

var columns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: "Name of the DataVolume."},
	{Name: "Phase", Type: "string", Description: "Where the DataVolume is in its life."},
	{Name: "Progress", Type: "string", Description: "Share of the data moved."},
	{Name: "Restarts", Type: "integer", Description: "Restarts of the pod moving the data."},
	{Name: "Age", Type: "string", Description: "Time since creation."},
}

func (tableConvertor) ConvertToTable(_ context.Context, obj runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{}
	if opts, ok := tableOptions.(*metav1.TableOptions); !ok || !opts.NoHeaders {
		table.ColumnDefinitions = columns
	}
	rows, err := metatable.MetaToTableRow(obj, func(obj runtime.Object, _ metav1.Object, name, age string) ([]interface{}, error) {
		dv, ok := obj.(*cdi.DataVolume)
		if !ok {
			return nil, fmt.Errorf("not a DataVolume: %T", obj)
		}
		return []interface{}{name, string(dv.Status.Phase), string(dv.Status.Progress), int64(dv.Status.RestartCount), age}, nil
	})
	if err != nil {
		return nil, err
	}
	table.Rows = rows
	if m, err := meta.ListAccessor(obj); err == nil {
		table.ResourceVersion = m.GetResourceVersion()
		table.Continue = m.GetContinue()
		table.RemainingItemCount = m.GetRemainingItemCount()
	} else if m, err := meta.CommonAccessor(obj); err == nil {
		table.ResourceVersion = m.GetResourceVersion()
	}
	return table, nil
}
