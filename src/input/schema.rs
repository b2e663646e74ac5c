//! JSON Schemas of the input files, generated from the types that parse them (schemars): for
//! editors (every shipped plan and suite names its schema in a `# yaml-language-server:` line)
//! and for `gpuconform schema`. `gpuconform lint` checks more than a schema can say (values
//! against the catalog, steps' `needs`, parameters per check kind) with file, line and field.

/// The root schema of `T` under `id` and `title`, the parser's type names (`RawStep`) shown as
/// the file's words (`Step`).
pub fn root<T: schemars::JsonSchema>(
    id: &str,
    title: &str,
    description: &str,
) -> serde_json::Value {
    let mut schema = schemars::generate::SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator()
        .into_root_schema_for::<T>();
    schema.insert("$id".into(), id.into());
    schema.insert("title".into(), title.into());
    schema.insert("description".into(), description.into());
    let text = schema
        .to_value()
        .to_string()
        .replace("\"#/$defs/Raw", "\"#/$defs/");
    let mut value: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    if let Some(defs) = value.get_mut("$defs").and_then(|d| d.as_object_mut()) {
        let renamed: serde_json::Map<String, serde_json::Value> = std::mem::take(defs)
            .into_iter()
            .map(|(k, v)| (k.strip_prefix("Raw").map(str::to_string).unwrap_or(k), v))
            .collect();
        *defs = renamed;
    }
    value
}

/// `value` as the schema files hold it: two-space indented, one newline at the end.
pub fn pretty(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}
