package virtualmachine

import (
	"context"
	"errors"
	"fmt"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/datavolume/datavolume/pkg/apis/cdi"
	"github.com/datavolume/datavolume/pkg/apis/cdi/validation"
	"github.com/datavolume/datavolume/pkg/cloneauth"
	"github.com/datavolume/datavolume/pkg/plan"
	"github.com/datavolume/datavolume/pkg/webhook/datavolume"
)

// CloneAuthorizeFunc decides whether a clone may happen. An error denies it
// (fail closed). In the server it is (*cloneauth.Authorizer).Authorize.
type CloneAuthorizeFunc func(ctx context.Context, req cloneauth.Request) (cloneauth.Decision, error)

// Admitter checks the dataVolumeTemplates of VirtualMachines.
type Admitter struct {
	Rules          *datavolume.Rules
	Decoder        *datavolume.Decoder
	AuthorizeClone CloneAuthorizeFunc
}

// Verdict is what admission found in one VirtualMachine.
type Verdict struct {
	// Errors refuse the VM, each at its field path.
	Errors field.ErrorList
	// CloneDenials counts the Errors that are refused clone authorizations.
	CloneDenials int
	// Warnings are shown to the user.
	Warnings []string
	// Clones are the clone authorizations decided, for the audit log.
	Clones []CloneDecision
	// TooManyChecks, when set, refused a clone check for load
	// (cloneauth.ErrTooManyChecks): the VM is to be answered 429 and
	// retried, and the templates after it were not checked.
	TooManyChecks error
}

// CloneDecision is one clone authorization and the template it was for.
type CloneDecision struct {
	Template int
	Request  cloneauth.Request
	Decision cloneauth.Decision
}

// Admit checks every template of vm, in namespace, that is new or changed
// since old (nil on create). Unchanged templates were admitted before; they
// are not re-checked, so starting or editing a VM does not fail because a
// source claim has since changed.
func (a *Admitter) Admit(ctx context.Context, namespace string, vm, old *virtualMachine) (Verdict, error) {
	var verdict Verdict
	templates := field.NewPath("spec", "dataVolumeTemplates")
	for i, template := range vm.Spec.DataVolumeTemplates {
		if old != nil && a.unchanged(template, old) {
			continue
		}
		if err := a.admitTemplate(ctx, namespace, vm, i, template, templates.Index(i), &verdict); err != nil {
			return Verdict{}, err
		}
		if verdict.TooManyChecks != nil {
			// The VM is refused for now: checking the rest would only
			// wait for the same account's slots again.
			break
		}
	}
	return verdict, nil
}

func (a *Admitter) admitTemplate(ctx context.Context, namespace string, vm *virtualMachine, index int, template dataVolumeTemplate, path *field.Path, verdict *Verdict) error {
	verdict.Errors = append(verdict.Errors, checkTemplateMeta(namespace, template.Metadata, path.Child("metadata"))...)
	specPath := path.Child("spec")
	spec, err := a.Decoder.Spec(template.Spec)
	if err != nil {
		verdict.Errors = append(verdict.Errors, &field.Error{Type: field.ErrorTypeInvalid, Field: specPath.String(),
			BadValue: field.OmitValueType{}, Detail: fmt.Sprintf("cannot be read as a DataVolume spec: %v", err)})
		return nil
	}
	verdict.Errors = append(verdict.Errors, validation.ValidateDataVolumeSpec(spec, specPath)...)

	// Authorize first: what the source rules find (whether the claim exists,
	// its size and volume mode, the pods using it) is for a service account
	// allowed to clone it, not for one that is refused.
	if denial := a.authorizeClone(ctx, namespace, vm, index, template.Metadata.Name, spec, specPath, verdict); denial != nil {
		verdict.Errors = append(verdict.Errors, denial)
		verdict.CloneDenials++
		return nil
	}
	source, err := a.Rules.CheckSource(ctx, namespace, spec, specPath)
	if err != nil {
		return fmt.Errorf("checking %s against its source: %w", path, err)
	}
	verdict.Errors = append(verdict.Errors, source.Errors...)
	verdict.Warnings = append(verdict.Warnings, source.Warnings...)
	return nil
}

// checkTemplateMeta requires a name and allows only the VM's namespace: the
// DataVolume is created next to the VM, and owned by it.
func checkTemplateMeta(namespace string, meta objectMeta, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if meta.Name == "" {
		errs = append(errs, field.Required(path.Child("name"), "the name of the DataVolume to create"))
	} else {
		for _, msg := range apimachineryvalidation.NameIsDNSSubdomain(meta.Name, false) {
			errs = append(errs, field.Invalid(path.Child("name"), meta.Name, msg))
		}
	}
	if meta.Namespace != "" && meta.Namespace != namespace {
		errs = append(errs, field.Invalid(path.Child("namespace"), meta.Namespace,
			fmt.Sprintf("must be empty or the VirtualMachine's namespace %q", namespace)))
	}
	return errs
}

// authorizeClone asks whether the VM's service account may clone a source
// in another namespace, records the decision, and returns the refusal if
// it is one. Same-namespace clones need no check.
func (a *Admitter) authorizeClone(ctx context.Context, namespace string, vm *virtualMachine, index int, targetName string,
	spec *cdi.DataVolumeSpec, specPath *field.Path, verdict *Verdict) *field.Error {
	p := plan.At(namespace, spec, specPath)
	if !p.IsCrossNamespace(namespace) {
		return nil
	}
	serviceAccount := vm.ServiceAccountName()
	req := cloneauth.Request{
		User:            cloneauth.ServiceAccountUser(namespace, serviceAccount),
		SourceNamespace: p.CloneSource.Namespace,
		SourceName:      p.CloneSource.Name,
		TargetNamespace: namespace,
		TargetName:      targetName,
	}
	decision, err := a.AuthorizeClone(ctx, req)
	switch {
	case errors.Is(err, cloneauth.ErrTooManyChecks):
		verdict.TooManyChecks = err
		decision = cloneauth.Decision{Allowed: false, Reason: err.Error()}
	case err != nil:
		decision = cloneauth.Decision{Allowed: false, Reason: fmt.Sprintf("the authorization check failed: %v", err)}
	}
	verdict.Clones = append(verdict.Clones, CloneDecision{Template: index, Request: req, Decision: decision})
	if decision.Allowed {
		return nil
	}
	return field.Forbidden(specPath.Child("source", "pvc"), denialDetail(req, serviceAccount, decision))
}

// denialDetail spells out who may not clone what, and which permission to
// ask for. It names only what the VM itself names: nothing about the source
// claim, whether it exists included, is told to a refused requester.
func denialDetail(req cloneauth.Request, serviceAccount string, decision cloneauth.Decision) string {
	detail := fmt.Sprintf("service account %s/%s may not clone the PersistentVolumeClaim %s/%s into namespace %s",
		req.TargetNamespace, serviceAccount, req.SourceNamespace, req.SourceName, req.TargetNamespace)
	if decision.Missing != "" {
		detail += fmt.Sprintf("; it needs %s; ask an administrator for a RoleBinding in namespace %s that grants it to the service account",
			decision.Missing, req.SourceNamespace)
	}
	if decision.Reason != "" {
		detail += " (" + decision.Reason + ")"
	}
	return detail
}

// unchanged reports whether old has a template of the same name with the
// same namespace and an equal spec.
func (a *Admitter) unchanged(template dataVolumeTemplate, old *virtualMachine) bool {
	for _, previous := range old.Spec.DataVolumeTemplates {
		if previous.Metadata.Name != template.Metadata.Name || previous.Metadata.Namespace != template.Metadata.Namespace {
			continue
		}
		spec, err := a.Decoder.Spec(template.Spec)
		if err != nil {
			return false
		}
		previousSpec, err := a.Decoder.Spec(previous.Spec)
		return err == nil && apiequality.Semantic.DeepEqual(spec, previousSpec)
	}
	return false
}
