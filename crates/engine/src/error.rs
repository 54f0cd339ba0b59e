//! Command errors with MongoDB's real error codes and code names.

/// A failed command (or, inside a write command, one failed statement).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code_name} ({code}): {errmsg}")]
pub struct CommandError {
    pub code: i32,
    pub code_name: &'static str,
    pub errmsg: String,
}

/// Code name for a numeric error code (`Location<code>` for unnamed ones, as mongod does).
pub fn code_name(code: i32) -> &'static str {
    match code {
        2 => "BadValue",
        9 => "FailedToParse",
        14 => "TypeMismatch",
        20 => "IllegalOperation",
        16 => "InvalidLength",
        26 => "NamespaceNotFound",
        27 => "IndexNotFound",
        28 => "PathNotViable",
        40 => "ConflictingUpdateOperators",
        48 => "NamespaceExists",
        51 => "UnknownError",
        52 => "DollarPrefixedFieldName",
        53 => "InvalidIdField",
        54 => "NotSingleValueField",
        56 => "EmptyFieldName",
        59 => "CommandNotFound",
        66 => "ImmutableField",
        67 => "CannotCreateIndex",
        72 => "InvalidOptions",
        73 => "InvalidNamespace",
        85 => "IndexOptionsConflict",
        86 => "IndexKeySpecsConflict",
        115 => "CommandNotSupported",
        168 => "InvalidPipelineOperator",
        171 => "CannotIndexParallelArrays",
        11000 => "DuplicateKey",
        241 => "ConversionFailure",
        _ => location_name(code),
    }
}

/// `Location<code>` names for codes without a symbolic name, interned once per code.
fn location_name(code: i32) -> &'static str {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashMap<i32, &'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    names
        .entry(code)
        .or_insert_with(|| Box::leak(format!("Location{code}").into_boxed_str()))
}

impl CommandError {
    pub fn new(code: i32, errmsg: impl Into<String>) -> Self {
        CommandError {
            code,
            code_name: code_name(code),
            errmsg: errmsg.into(),
        }
    }
    pub fn bad_value(msg: impl Into<String>) -> Self {
        Self::new(2, msg)
    }
    pub fn failed_to_parse(msg: impl Into<String>) -> Self {
        Self::new(9, msg)
    }
    pub fn type_mismatch(msg: impl Into<String>) -> Self {
        Self::new(14, msg)
    }

    /// The error as the body of a failed reply: `{ok: 0.0, errmsg, code, codeName}`.
    pub fn to_reply(&self) -> bson::Document {
        bson::doc! {
            "ok": 0.0,
            "errmsg": self.errmsg.clone(),
            "code": self.code,
            "codeName": self.code_name,
        }
    }
}

pub type Res<T> = Result<T, CommandError>;
