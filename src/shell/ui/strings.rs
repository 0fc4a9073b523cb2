//! The words of the staff pages, English and Chinese, by key (`L.at_risk` in the
//! templates). One row per key, so a phrase and its translation are read and edited together.

use serde_json::{Value, json};

/// (key, English, Chinese).
const STRINGS: [(&str, &str, &str); 47] = [
    ("at_risk", "At risk", "即将超时"),
    ("logout", "Log out", "退出"),
    ("login_title", "Log in", "登录"),
    (
        "login_help",
        "Enter the read token (or the API token) once; this browser keeps it in a cookie.",
        "请输入只读令牌（或 API 令牌），本浏览器会用 Cookie 记住它。",
    ),
    ("token", "Token", "令牌"),
    ("login", "Log in", "登录"),
    ("wrong_token", "That token is not right.", "令牌不正确。"),
    ("within", "Due within", "截止于"),
    ("workflow", "Workflow", "流程"),
    ("priority", "Priority", "优先级"),
    ("clock", "Clock", "时限"),
    ("assignee", "Assignee", "处理人"),
    ("all", "All", "全部"),
    ("filter", "Filter", "筛选"),
    ("runs", "clock runs", "个时限"),
    ("updated", "updated", "更新于"),
    ("refresh_note", "refreshes every 30 s", "每 30 秒刷新"),
    ("ticket", "Ticket", "工单"),
    ("due", "Due", "截止时间"),
    ("left", "Left", "剩余"),
    ("risk", "Risk", "超时风险"),
    ("stage", "Stage", "阶段"),
    ("level", "Level", "升级级别"),
    ("acknowledged", "Ack", "已确认"),
    (
        "nothing",
        "Nothing breached or due in this window.",
        "此时间窗内没有超时或即将超时的工单。",
    ),
    (
        "no_history",
        "Fewer than 20 comparable runs in the history: no forecast",
        "可比的历史记录不足 20 条：不做预测",
    ),
    ("category", "Category", "类别"),
    ("customer", "Customer", "客户"),
    ("opened", "Opened", "创建时间"),
    ("waiting", "Waiting on customer since", "等待客户回复自"),
    ("resolved", "Resolved", "解决时间"),
    ("score", "Survey score", "满意度评分"),
    ("clocks", "Clocks", "时限"),
    ("target", "target", "目标"),
    ("elapsed", "elapsed", "已用"),
    ("acknowledged_at", "Acknowledged at", "确认时间"),
    ("acknowledge", "Acknowledge", "确认"),
    ("notifications", "Notifications", "通知"),
    ("paged", "paged", "已呼叫"),
    ("attempts", "attempt(s)", "次尝试"),
    (
        "no_delivery",
        "no delivery (no address on file)",
        "未发送（无联系方式）",
    ),
    ("none", "None.", "无。"),
    ("timeline", "Timeline", "处理记录"),
    ("no_ticket", "No such ticket", "没有此工单"),
    ("yes", "yes", "是"),
    ("no", "no", "否"),
    (
        "unavailable",
        "The database is unavailable; try again shortly.",
        "数据库暂不可用，请稍后再试。",
    ),
];

/// The pages' words in `lang` (`zh-CN`, else English), as the templates' `L` object.
pub(super) fn strings(lang: &str) -> Value {
    let zh = lang == "zh-CN";
    let m: serde_json::Map<String, Value> = STRINGS
        .iter()
        .map(|(k, en, cn)| (k.to_string(), json!(if zh { cn } else { en })))
        .collect();
    Value::Object(m)
}
