//! One schema for objects whose schemas differ (`docs/protocol.md`, "Schema
//! merging"): columns by name, types widened only without loss, and a
//! conflict that names both objects and the column.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// Two objects of one table whose column cannot be read as one type.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "column `{column}` is {first_type} in {first} but {second_type} in {second}, and no type holds both without loss, so the files cannot be read as one table"
)]
pub struct SchemaConflict {
    pub column: String,
    /// The object that gave the column its type so far, and that type.
    pub first: String,
    pub first_type: DataType,
    /// The object that disagrees, and its type.
    pub second: String,
    pub second_type: DataType,
    /// Every column of the objects, in merged order, with each conflicting
    /// one typed `Null`: the shape a catalog can still list the table with.
    pub partial: SchemaRef,
}

/// Integer and floating-point types by the values they hold exactly.
fn holds(ty: &DataType) -> Option<(bool, bool, u8)> {
    // (float, signed, bits of magnitude they hold exactly)
    Some(match ty {
        DataType::Int8 => (false, true, 7),
        DataType::Int16 => (false, true, 15),
        DataType::Int32 => (false, true, 31),
        DataType::Int64 => (false, true, 63),
        DataType::UInt8 => (false, false, 8),
        DataType::UInt16 => (false, false, 16),
        DataType::UInt32 => (false, false, 32),
        DataType::UInt64 => (false, false, 64),
        DataType::Float16 => (true, true, 11),
        DataType::Float32 => (true, true, 24),
        DataType::Float64 => (true, true, 53),
        _ => return None,
    })
}

/// Whether every value of `from` is exactly a value of `to`: a wider
/// integer, an unsigned integer into a wider signed one, an integer into a
/// float whose mantissa holds it, a float into a wider float.
fn widens(from: &DataType, to: &DataType) -> bool {
    let (Some((from_float, from_signed, from_bits)), Some((to_float, to_signed, to_bits))) =
        (holds(from), holds(to))
    else {
        return false;
    };
    match (from_float, to_float) {
        (true, false) => false,
        (true, true) => from_bits <= to_bits,
        // An integer's magnitude must fit the float's mantissa.
        (false, true) => from_bits <= to_bits,
        (false, false) => (to_signed || !from_signed) && from_bits <= to_bits,
    }
}

/// The type both `a` and `b` are read as: either one if they are the same
/// (nested field names aside) or one widens to the other, else the
/// narrowest type both widen to (`int8` and `uint8` as `int16`, `int32` and
/// `float32` as `float64`).
fn common_type(a: &DataType, b: &DataType) -> Option<DataType> {
    if a == b || a.equals_datatype(b) || widens(b, a) {
        return Some(a.clone());
    }
    if widens(a, b) {
        return Some(b.clone());
    }
    [
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Float32,
        DataType::Float64,
    ]
    .into_iter()
    .find(|c| widens(a, c) && widens(b, c))
}

/// One schema for objects whose schemas may differ: every column of any of
/// them, in the order the objects (in the given order) first name them;
/// a column missing from some object, or nullable in one, is nullable; a
/// column whose types differ takes the type both widen to without loss.
/// Objects that agree come back with exactly their schema. Names the two
/// objects and the column when a column's types cannot be reconciled.
pub fn merge_schemas(objects: &[(String, SchemaRef)]) -> Result<SchemaRef, Box<SchemaConflict>> {
    let Some((_, first)) = objects.first() else {
        return Ok(Arc::new(Schema::empty()));
    };
    if objects.iter().all(|(_, s)| s.fields() == first.fields()) {
        return Ok(first.clone());
    }
    // Per column: its field so far and the object that set its type.
    let mut fields: Vec<(Field, usize)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut conflict: Option<(String, usize, usize, DataType, DataType)> = None;
    let mut broken: Vec<bool> = Vec::new();
    for (k, (_, schema)) in objects.iter().enumerate() {
        for field in schema.fields() {
            let Some(&i) = index.get(field.name()) else {
                index.insert(field.name().clone(), fields.len());
                let mut f = field.as_ref().clone();
                // Missing from the objects before this one.
                if k > 0 {
                    f = f.with_nullable(true);
                }
                fields.push((f, k));
                broken.push(false);
                continue;
            };
            if broken[i] {
                continue;
            }
            let (merged, origin) = &mut fields[i];
            if field.is_nullable() {
                merged.set_nullable(true);
            }
            match common_type(merged.data_type(), field.data_type()) {
                Some(ty) if &ty == merged.data_type() => {}
                Some(ty) => {
                    merged.set_data_type(ty);
                    *origin = k;
                }
                None => {
                    conflict.get_or_insert_with(|| {
                        (
                            field.name().clone(),
                            *origin,
                            k,
                            merged.data_type().clone(),
                            field.data_type().clone(),
                        )
                    });
                    broken[i] = true;
                }
            }
        }
        // Columns this object lacks are nulls in its rows.
        for (f, _) in fields.iter_mut() {
            if schema.field_with_name(f.name()).is_err() {
                f.set_nullable(true);
            }
        }
    }
    let out: Vec<Field> = fields
        .into_iter()
        .zip(&broken)
        .map(|((f, _), &broken)| {
            if broken {
                Field::new(f.name(), DataType::Null, true)
            } else {
                f
            }
        })
        .collect();
    let metadata = if objects
        .iter()
        .all(|(_, s)| s.metadata() == first.metadata())
    {
        first.metadata().clone()
    } else {
        HashMap::new()
    };
    let merged = Arc::new(Schema::new_with_metadata(out, metadata));
    match conflict {
        None => Ok(merged),
        Some((column, a, b, first_type, second_type)) => Err(Box::new(SchemaConflict {
            column,
            first: objects[a].0.clone(),
            first_type,
            second: objects[b].0.clone(),
            second_type,
            partial: merged,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema(fields: &[(&str, DataType, bool)]) -> SchemaRef {
        Arc::new(Schema::new(
            fields
                .iter()
                .map(|(n, t, null)| Field::new(*n, t.clone(), *null))
                .collect::<Vec<_>>(),
        ))
    }

    #[test]
    fn widening_is_lossless_only() {
        use DataType::*;
        assert!(widens(&Int32, &Int64));
        assert!(widens(&UInt32, &Int64));
        assert!(widens(&Int32, &Float64));
        assert!(widens(&Float32, &Float64));
        assert!(!widens(&Int64, &Int32));
        assert!(!widens(&Int64, &Float64));
        assert!(!widens(&Int32, &Float32));
        assert!(!widens(&Int8, &UInt64));
        assert!(!widens(&Float64, &Int64));
        assert_eq!(common_type(&Int8, &UInt8), Some(Int16));
        assert_eq!(common_type(&Int32, &Float32), Some(Float64));
        assert_eq!(common_type(&UInt64, &Int64), None);
        assert_eq!(common_type(&Utf8, &Int64), None);
    }

    #[test]
    fn schemas_merge_by_name_and_widen() {
        let a = schema(&[
            ("id", DataType::Int32, false),
            ("name", DataType::Utf8, false),
        ]);
        let b = schema(&[
            ("score", DataType::Float32, false),
            ("id", DataType::Int64, false),
        ]);
        let merged = merge_schemas(&[("a".into(), a.clone()), ("b".into(), b)]).unwrap();
        assert_eq!(
            merged,
            schema(&[
                ("id", DataType::Int64, false),
                ("name", DataType::Utf8, true),
                ("score", DataType::Float32, true),
            ])
        );
        let same = merge_schemas(&[("a".into(), a.clone()), ("a2".into(), a.clone())]).unwrap();
        assert!(Arc::ptr_eq(&same, &a));
    }

    #[test]
    fn a_conflict_names_both_objects_and_the_column() {
        let a = schema(&[("id", DataType::Int64, false), ("v", DataType::Utf8, true)]);
        let b = schema(&[("id", DataType::Int64, false), ("v", DataType::Int64, true)]);
        let err =
            merge_schemas(&[("s/t/a.parquet".into(), a), ("s/t/b.parquet".into(), b)]).unwrap_err();
        let text = err.to_string();
        for part in ["`v`", "s/t/a.parquet", "s/t/b.parquet", "Utf8", "Int64"] {
            assert!(text.contains(part), "{text}");
        }
        assert_eq!(
            err.partial,
            schema(&[("id", DataType::Int64, false), ("v", DataType::Null, true)])
        );
    }
}
