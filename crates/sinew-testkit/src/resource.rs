//! `resource()`: renders one Kubernetes-shaped resource document (apiVersion, kind, metadata, spec).

/// One YAML document `apiVersion: sinew.dev/v1alpha1`, `kind`, `metadata.name`
/// and `spec` with `spec_yaml` indented under it. `spec_yaml`'s common
/// leading indentation is removed first, so it can be written indented in a test.
///
/// ```
/// let route = sinew_testkit::resource("Route", "shop", "
///     hosts: [shop]
///     rules:
///       - backends: [{service: web}]");
/// assert!(route.contains("kind: Route\n"));
/// assert!(route.ends_with("spec:\n  hosts: [shop]\n  rules:\n    - backends: [{service: web}]\n"));
/// ```
pub fn resource(kind: &str, name: &str, spec_yaml: &str) -> String {
    let mut out = format!(
        "---\napiVersion: sinew.dev/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n"
    );
    out.push_str(&indent(spec_yaml, 2));
    out
}

/// `yaml` without blank lines, its common leading indentation replaced by `by` spaces.
pub(crate) fn indent(yaml: &str, by: usize) -> String {
    let lines: Vec<&str> = yaml.lines().filter(|l| !l.trim().is_empty()).collect();
    let common = lines
        .iter()
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let pad = " ".repeat(by);
    lines
        .iter()
        .map(|l| format!("{pad}{}\n", l.get(common..).unwrap_or(l)))
        .collect()
}
