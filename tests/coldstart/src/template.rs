//! The functions of infra/template.yaml and the environment each one starts with.
//!
//! The values are what CloudFormation would put there, made up where they name a resource:
//! cold start reads them (`required_env`, number parsing) but never reaches the resources.

use std::path::Path;

use serde_norway::value::{Tag, TaggedValue};
use serde_norway::Value;

use crate::Error;

/// One `AWS::Serverless::Function` of the template.
#[derive(Debug, Clone)]
pub struct Function {
    pub logical_id: String,
    /// `Metadata.BuildProperties.Binary`: the cargo binary that is the function.
    pub binary: String,
    /// Globals.Function.Environment.Variables, then the function's own (which win).
    pub env: Vec<(String, String)>,
}

/// The template's functions, in the template's order.
pub fn functions(path: &Path) -> Result<Vec<Function>, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.display().to_string(),
        source,
    })?;
    let template: Value = serde_norway::from_str(&text).map_err(|source| Error::Template {
        path: path.display().to_string(),
        source,
    })?;
    let resources = template["Resources"]
        .as_mapping()
        .ok_or_else(|| Error::Shape("no Resources mapping".into()))?;
    let global_env = &template["Globals"]["Function"]["Environment"]["Variables"];

    let mut functions = Vec::new();
    for (id, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let logical_id = id
            .as_str()
            .ok_or_else(|| Error::Shape("a resource id is not a string".into()))?
            .to_string();
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .ok_or_else(|| {
                Error::Shape(format!(
                    "{logical_id} has no Metadata.BuildProperties.Binary"
                ))
            })?
            .to_string();
        let mut env: Vec<(String, String)> = Vec::new();
        for variables in [
            global_env,
            &resource["Properties"]["Environment"]["Variables"],
        ] {
            let Some(variables) = variables.as_mapping() else {
                continue;
            };
            for (name, value) in variables {
                let name = name
                    .as_str()
                    .ok_or_else(|| Error::Shape(format!("{logical_id}: a variable name")))?;
                let value = resolve(&template, value)
                    .map_err(|why| Error::Shape(format!("{logical_id} {name}: {why}")))?;
                env.retain(|(n, _)| n != name);
                env.push((name.to_string(), value));
            }
        }
        functions.push(Function {
            logical_id,
            binary,
            env,
        });
    }
    Ok(functions)
}

/// A variable's value as the deployed function would see it: a parameter's default, the
/// name of a resource, or for a queue its URL (what `!Ref` gives for `AWS::SQS::Queue`).
fn resolve(template: &Value, value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Tagged(tagged) => resolve_ref(template, tagged),
        other => Err(format!("unsupported value {other:?}")),
    }
}

fn resolve_ref(template: &Value, tagged: &TaggedValue) -> Result<String, String> {
    if tagged.tag != Tag::new("Ref") {
        return Err(format!("only !Ref is supported, not {}", tagged.tag));
    }
    let target = tagged.value.as_str().ok_or("!Ref of a non-string")?;
    if let Some(parameter) = template["Parameters"].get(target) {
        return match &parameter["Default"] {
            Value::Null => Err(format!("parameter {target} has no Default")),
            default => resolve(template, default),
        };
    }
    let resource = template["Resources"]
        .get(target)
        .ok_or_else(|| format!("!Ref {target}: no such parameter or resource"))?;
    let name = format!("orderflow-coldstart-{target}");
    Ok(match resource["Type"].as_str() {
        Some("AWS::SQS::Queue") => {
            format!("https://sqs.us-east-1.amazonaws.com/000000000000/{name}")
        }
        _ => name,
    })
}
