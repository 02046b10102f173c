//! Typed access to the fields of one JSON row, with errors that name the field.

use std::borrow::Cow;

use serde_json::{Map, Value};

use super::{LineError, Message, Role};

/// One row: a JSON object whose fields are read by name.
pub(crate) type Row = Map<String, Value>;

/// How a value's type is named in messages ("found a number").
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn missing(field: &str) -> LineError {
    LineError::Missing { field: field.to_owned() }
}

fn wrong_type(field: &str, expected: &'static str, found: &Value) -> LineError {
    LineError::WrongType { field: field.to_owned(), expected, found: kind(found) }
}

fn empty(field: &str) -> LineError {
    LineError::Empty { field: field.to_owned() }
}

/// A required field.
pub(crate) fn field<'a>(row: &'a Row, name: &str) -> Result<&'a Value, LineError> {
    row.get(name).ok_or_else(|| missing(name))
}

/// A required string field.
pub(crate) fn string<'a>(row: &'a Row, name: &str) -> Result<&'a str, LineError> {
    let value = field(row, name)?;
    value.as_str().ok_or_else(|| wrong_type(name, "a string", value))
}

/// An optional string field; `null` counts as absent.
pub(crate) fn optional_string<'a>(row: &'a Row, name: &str) -> Result<Option<&'a str>, LineError> {
    match row.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(name, "a string", other)),
    }
}

/// The optional `id` field: a string that is not blank, or an integer. RewardBench and
/// many Hugging Face exports number their rows (`"id": 1234`, an int64 column), so an
/// integer id is kept as its decimal digits: `7` and `"7"` are the same id, and the
/// sample hashes (which include the id's text) do not depend on how it was written.
/// A fractional or out-of-range number is an error: `1.5` has no canonical digits.
pub(crate) fn optional_id(row: &Row) -> Result<Option<Cow<'_, str>>, LineError> {
    match row.get("id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(id)) if id.trim().is_empty() => Err(empty("id")),
        Some(Value::String(id)) => Ok(Some(Cow::Borrowed(id))),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Ok(Some(Cow::Owned(i.to_string()))),
            (None, Some(u)) => Ok(Some(Cow::Owned(u.to_string()))),
            (None, None) => Err(wrong_type("id", "a string or an integer", &Value::Number(n.clone()))),
        },
        Some(other) => Err(wrong_type("id", "a string or an integer", other)),
    }
}

/// Serde's side of [`optional_id`], for rows read with `#[derive(Deserialize)]`: an id
/// that is a string or an integer, as its text.
pub fn deserialize_id<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    use serde::Deserialize;
    use serde::de::Error;
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Text(String),
        Signed(i64),
        Unsigned(u64),
    }
    match Id::deserialize(deserializer) {
        Ok(Id::Text(text)) => Ok(text),
        Ok(Id::Signed(n)) => Ok(n.to_string()),
        Ok(Id::Unsigned(n)) => Ok(n.to_string()),
        Err(_) => Err(D::Error::custom("field \"id\": expected a string or an integer")),
    }
}

/// Checks that a response (or a message's content) has some non-whitespace text.
pub(crate) fn non_blank(text: &str, field: &str) -> Result<(), LineError> {
    if text.trim().is_empty() { Err(empty(field)) } else { Ok(()) }
}

/// A required response field: a string with some non-whitespace text.
pub(crate) fn response(row: &Row, name: &str) -> Result<String, LineError> {
    let text = string(row, name)?;
    non_blank(text, name)?;
    Ok(text.to_owned())
}

/// Checks the rules every prompt follows: at least one message, the last from the
/// user. `field` is what the error names.
pub(crate) fn check_prompt(prompt: &[Message], field: &str) -> Result<(), LineError> {
    match prompt.last() {
        Some(message) if message.role == Role::User => Ok(()),
        last => Err(LineError::PromptEnd { field: field.to_owned(), last: last.map(|m| m.role) }),
    }
}

/// A prompt given as plain text: one user message.
pub(crate) fn prompt_from_text(text: &str, field: &str) -> Result<Vec<Message>, LineError> {
    non_blank(text, field)?;
    Ok(vec![Message::user(text)])
}

/// A prompt given as a list of `{"role", "content"}` objects.
pub(crate) fn prompt_from_list(items: &[Value], field: &str) -> Result<Vec<Message>, LineError> {
    let prompt = items
        .iter()
        .enumerate()
        .map(|(i, item)| message(item, &format!("{field}[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    check_prompt(&prompt, field)?;
    Ok(prompt)
}

/// The `prompt` field as a list of messages (our schema).
pub(crate) fn prompt_list(row: &Row) -> Result<Vec<Message>, LineError> {
    let value = field(row, "prompt")?;
    let items = value.as_array().ok_or_else(|| wrong_type("prompt", "a list of messages", value))?;
    prompt_from_list(items, "prompt")
}

/// The `prompt` field as plain text (RewardBench).
pub(crate) fn prompt_text(row: &Row) -> Result<Vec<Message>, LineError> {
    prompt_from_text(string(row, "prompt")?, "prompt")
}

/// The `prompt` field as either plain text or a list of messages.
pub(crate) fn prompt_any(row: &Row) -> Result<Vec<Message>, LineError> {
    match field(row, "prompt")? {
        Value::String(text) => prompt_from_text(text, "prompt"),
        Value::Array(items) => prompt_from_list(items, "prompt"),
        other => Err(wrong_type("prompt", "a string or a list of messages", other)),
    }
}

/// One `{"role", "content"}` object; `path` is its position, e.g. `prompt[2]`.
fn message(value: &Value, path: &str) -> Result<Message, LineError> {
    let object = value.as_object().ok_or_else(|| wrong_type(path, "an object with \"role\" and \"content\"", value))?;
    let role_path = format!("{path}.role");
    let content_path = format!("{path}.content");
    let role = match object.get("role") {
        None => return Err(missing(&role_path)),
        Some(Value::String(name)) => {
            Role::from_name(name).ok_or_else(|| LineError::UnknownRole { field: role_path, role: name.clone() })?
        }
        Some(other) => return Err(wrong_type(&role_path, "a string", other)),
    };
    let content = match object.get("content") {
        None => return Err(missing(&content_path)),
        Some(Value::String(text)) => text,
        Some(other) => return Err(wrong_type(&content_path, "a string", other)),
    };
    non_blank(content, &content_path)?;
    Ok(Message::new(role, content.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(value: Value) -> Row {
        value.as_object().unwrap().clone()
    }

    fn err(result: Result<Vec<Message>, LineError>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn prompt_list_names_the_bad_element() {
        let r = row(json!({"prompt": [{"role": "user", "content": "a"}, 7]}));
        assert_eq!(
            err(prompt_list(&r)),
            "field \"prompt[1]\": expected an object with \"role\" and \"content\", found a number"
        );
        let r = row(json!({"prompt": [{"content": "a"}]}));
        assert_eq!(err(prompt_list(&r)), "missing field \"prompt[0].role\"");
        let r = row(json!({"prompt": [{"role": "user", "content": false}]}));
        assert_eq!(err(prompt_list(&r)), "field \"prompt[0].content\": expected a string, found a boolean");
        let r = row(json!({"prompt": [{"role": "user", "content": "  "}]}));
        assert_eq!(err(prompt_list(&r)), "field \"prompt[0].content\": must not be empty");
    }

    #[test]
    fn prompt_any_accepts_text_or_list() {
        let text = prompt_any(&row(json!({"prompt": "hi"}))).unwrap();
        let list = prompt_any(&row(json!({"prompt": [{"role": "user", "content": "hi"}]}))).unwrap();
        assert_eq!(text, list);
        let r = row(json!({"prompt": {"role": "user"}}));
        assert_eq!(err(prompt_any(&r)), "field \"prompt\": expected a string or a list of messages, found an object");
    }

    #[test]
    fn optional_fields_treat_null_as_absent() {
        assert_eq!(optional_string(&row(json!({"subset": null})), "subset"), Ok(None));
        assert_eq!(optional_id(&row(json!({"id": " "}))), Err(LineError::Empty { field: "id".into() }));
        assert_eq!(optional_id(&row(json!({"id": 3}))).unwrap().as_deref(), Some("3"));
        assert_eq!(optional_id(&row(json!({"id": -3}))).unwrap().as_deref(), Some("-3"));
        assert_eq!(optional_id(&row(json!({"id": u64::MAX}))).unwrap().as_deref(), Some("18446744073709551615"));
        assert_eq!(
            optional_id(&row(json!({"id": 1.5}))).unwrap_err().to_string(),
            "field \"id\": expected a string or an integer, found a number"
        );
        assert_eq!(
            optional_id(&row(json!({"id": [1]}))).unwrap_err().to_string(),
            "field \"id\": expected a string or an integer, found a list"
        );
    }
}
