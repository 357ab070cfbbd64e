//! Schema only: a field that must be present but may be `null`.
//!
//! schemars makes `Option<T>` fields optional, and `#[schemars(required)]` drops the `null`.
//! A field that a version made required, but that holds `null` in events upcast from the
//! version before, needs both: present, and `T` or `null`.

use std::borrow::Cow;
use std::marker::PhantomData;

use schemars::{JsonSchema, Schema, SchemaGenerator};

pub(crate) struct PresentOrNull<T>(PhantomData<T>);

impl<T: JsonSchema> JsonSchema for PresentOrNull<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        Option::<T>::schema_name()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        Option::<T>::json_schema(generator)
    }
}
