//! Raw HH-RLHF transcripts: `"\n\nHuman: ...\n\nAssistant: ..."`.
//!
//! Parsed as `shared/data/README.md` describes: the text is split into turns at the
//! markers `"\n\nHuman: "` and `"\n\nAssistant: "`, each turn is trimmed of leading
//! and trailing whitespace, the last turn must be an Assistant turn (it becomes the
//! response) and the earlier turns become the prompt. A `Human:` that is not
//! preceded by a blank line is ordinary text.
//!
//! One addition: a marker without its trailing space at the very end of the text
//! (`"...\n\nAssistant:"`) is an empty turn, so an empty final response is reported
//! as such instead of as a transcript that ends with a Human turn.

use super::json::{check_prompt, non_blank};
use super::{LineError, Message, Role};

const MARKERS: [(&str, Role); 2] = [("\n\nHuman: ", Role::User), ("\n\nAssistant: ", Role::Assistant)];

/// A parsed transcript: the conversation before the final Assistant turn, and that turn.
#[derive(Debug, PartialEq)]
pub(crate) struct Transcript {
    pub prompt: Vec<Message>,
    pub response: String,
}

/// Parses the transcript in field `field` (used in error messages).
pub(crate) fn parse(text: &str, field: &str) -> Result<Transcript, LineError> {
    let invalid = |reason: String| LineError::Transcript { field: field.to_owned(), reason };

    let Some(first) = next_marker(text, 0) else {
        return Err(invalid(r#"no "\n\nHuman: " or "\n\nAssistant: " turn markers"#.to_owned()));
    };
    if !text[..first.start].trim().is_empty() {
        return Err(invalid(r#"text before the first "\n\nHuman: " marker"#.to_owned()));
    }

    let mut turns = Vec::new();
    let mut marker = first;
    loop {
        let next = next_marker(text, marker.end);
        let end = next.as_ref().map_or(text.len(), |m| m.start);
        turns.push(Message::new(marker.role, text[marker.end..end].trim()));
        match next {
            Some(next) => marker = next,
            None => break,
        }
    }

    let last = turns.pop().expect("at least one marker was found");
    if last.role != Role::Assistant {
        return Err(invalid("the last turn is a Human turn, not an Assistant turn".to_owned()));
    }
    non_blank(&last.content, field)?;
    for (i, turn) in turns.iter().enumerate() {
        if turn.content.is_empty() {
            let speaker = if turn.role == Role::User { "Human" } else { "Assistant" };
            return Err(invalid(format!("turn {} ({speaker}) is empty", i + 1)));
        }
    }
    check_prompt(&turns, field)?;
    Ok(Transcript { prompt: turns, response: last.content })
}

/// Where a turn marker is in the text, and whose turn it starts.
struct Marker {
    start: usize,
    end: usize,
    role: Role,
}

/// The first marker at or after byte `from`.
fn next_marker(text: &str, from: usize) -> Option<Marker> {
    let rest = &text[from..];
    MARKERS
        .iter()
        .filter_map(|&(marker, role)| {
            if let Some(i) = rest.find(marker) {
                return Some(Marker { start: from + i, end: from + i + marker.len(), role });
            }
            // An empty turn at the very end: the marker without its trailing space.
            let bare = marker.trim_end_matches(' ');
            rest.ends_with(bare).then(|| Marker { start: text.len() - bare.len(), end: text.len(), role })
        })
        .min_by_key(|m| m.start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Transcript {
        parse(text, "chosen").unwrap()
    }

    fn err(text: &str) -> String {
        parse(text, "chosen").unwrap_err().to_string()
    }

    #[test]
    fn splits_turns_and_trims_them() {
        let t = ok("\n\nHuman:  Hi \n\nAssistant: Hello.\n\nHuman: How are you?\n\nAssistant:   Fine, thanks. \n");
        assert_eq!(t.prompt, [Message::user("Hi"), Message::assistant("Hello."), Message::user("How are you?")]);
        assert_eq!(t.response, "Fine, thanks.");
    }

    #[test]
    fn markers_need_a_blank_line_before_them() {
        let t = ok("\n\nHuman: Say Human: hi\nAssistant: no\n\nAssistant: Human: hi");
        assert_eq!(t.prompt, [Message::user("Say Human: hi\nAssistant: no")]);
        assert_eq!(t.response, "Human: hi");
    }

    #[test]
    fn reports_malformed_transcripts() {
        let prefix = "field \"chosen\": not an HH-RLHF transcript: ";
        assert_eq!(err("just text"), format!("{prefix}no \"\\n\\nHuman: \" or \"\\n\\nAssistant: \" turn markers"));
        assert_eq!(
            err("Intro\n\nHuman: a\n\nAssistant: b"),
            format!("{prefix}text before the first \"\\n\\nHuman: \" marker")
        );
        assert_eq!(
            err("\n\nHuman: a\n\nAssistant: b\n\nHuman: c"),
            format!("{prefix}the last turn is a Human turn, not an Assistant turn")
        );
        assert_eq!(
            err("\n\nHuman: a\n\nAssistant:  \n\nHuman: c\n\nAssistant: d"),
            format!("{prefix}turn 2 (Assistant) is empty")
        );
    }

    #[test]
    fn empty_final_response_is_an_empty_field() {
        assert_eq!(err("\n\nHuman: a\n\nAssistant:"), "field \"chosen\": must not be empty");
        assert_eq!(err("\n\nHuman: a\n\nAssistant:   "), "field \"chosen\": must not be empty");
    }

    #[test]
    fn prompt_must_end_with_the_human() {
        assert_eq!(
            err("\n\nAssistant: hello"),
            "field \"chosen\": the prompt must end with a user message, but it has no messages"
        );
        assert_eq!(
            err("\n\nHuman: a\n\nAssistant: b\n\nAssistant: c"),
            "field \"chosen\": the prompt must end with a user message, but its last message has role \"assistant\""
        );
    }
}
