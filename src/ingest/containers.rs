//! What a response and its request say about container billing (docs/billing.md):
//! whether code execution ran, whether files were preloaded into the
//! container, and whether the request's web tools make code execution free.

use serde_json::Value;

const CODE_EXECUTION_TOOLS: [&str; 3] = [
    "code_execution",
    "bash_code_execution",
    "text_editor_code_execution",
];

/// docs/billing.md: a `server_tool_use` of a code-execution tool, or a result block
/// whose type ends in `code_execution_tool_result`.
pub(super) fn block_uses_code_execution(block: &Value) -> bool {
    let Some(kind) = block.get("type").and_then(Value::as_str) else {
        return false;
    };
    if kind.ends_with("code_execution_tool_result") {
        return true;
    }
    kind == "server_tool_use"
        && block
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| CODE_EXECUTION_TOOLS.contains(&n))
}

/// Any `container_upload` block in any of a request's `messages`.
pub(super) fn messages_upload_files(messages: Option<&Value>) -> bool {
    let Some(messages) = messages.and_then(Value::as_array) else {
        return false;
    };
    messages.iter().any(|m| {
        m.get("content")
            .and_then(Value::as_array)
            .is_some_and(|blocks| {
                blocks
                    .iter()
                    .any(|b| b.get("type").and_then(Value::as_str) == Some("container_upload"))
            })
    })
}

/// First tool version whose web search / web fetch makes code execution free.
const FREE_CODE_EXECUTION_TOOL_VERSION: u32 = 20260209;

pub(super) fn request_declares_new_web_tools(request: &Value) -> bool {
    let Some(tools) = request.get("tools").and_then(Value::as_array) else {
        return false;
    };
    tools.iter().any(|t| {
        let Some(ty) = t.get("type").and_then(Value::as_str) else {
            return false;
        };
        let version = ty
            .strip_prefix("web_search_")
            .or_else(|| ty.strip_prefix("web_fetch_"))
            .and_then(|v| v.parse::<u32>().ok());
        version.is_some_and(|v| v >= FREE_CODE_EXECUTION_TOOL_VERSION)
    })
}
