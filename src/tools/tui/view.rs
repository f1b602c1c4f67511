//! Pure rendering: `render(frame, &Model)` draws the whole screen from the model and nothing
//! else: the header and footer, the main screen's panels and campaign table, and the help and
//! confirmation overlays (the calls and dead-letter screens are in `lists`). It reads no clock,
//! does no I/O and changes no state, so tests render it into a `TestBackend` from recorded API
//! answers. Without colours (`NO_COLOR`) the same screen is drawn and its colours removed.

use ratatui::Frame;
use ratatui::buffer::Buffer;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, Gauge, Padding, Paragraph, Row, Sparkline, Table, TableState, Wrap};

use super::keys::KEYS;
use super::lists;
use super::model::{CampaignRow, Connection, Model, Screen, StatusKind, thousands};
use super::poller::Snapshot;
use crate::protocol::api;

/// Below this size the panels cannot be laid out readably; a notice asks for more room.
pub const MIN_WIDTH: u16 = 60;
pub const MIN_HEIGHT: u16 = 16;
/// Rows of the panels above the campaign table. The sparklines shrink on short terminals; the
/// outcome/provider row grows up to its maximum when the table does not need the room.
const TOP_ROW_HEIGHT: u16 = 4;
const SPARKLINE_ROW_HEIGHT: u16 = 6;
const SPARKLINE_ROW_HEIGHT_SHORT: u16 = 4;
/// Below this body height the sparklines take their short height.
const SHORT_BODY_HEIGHT: u16 = 30;
const DETAIL_ROW_HEIGHT_MIN: u16 = 8;
const DETAIL_ROW_HEIGHT_MAX: u16 = 14;

const OUTCOMES: [&str; 4] = ["PICKED", "DISCONNECTED", "RNR", "FAILED"];

pub fn render(frame: &mut Frame, model: &Model) {
    let area = frame.area();
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        let notice = format!("terminal too small: {}x{}, need {MIN_WIDTH}x{MIN_HEIGHT} (q quits)", area.width, area.height);
        frame.render_widget(Paragraph::new(notice).wrap(Wrap { trim: true }), area);
        return;
    }
    let [header, body, footer] = Layout::vertical([Constraint::Length(1), Constraint::Min(0), Constraint::Length(1)]).areas(area);
    render_header(frame, header, model);
    match &model.snapshot {
        Some(snapshot) => {
            match &model.screen {
                Screen::Main => render_body(frame, body, model, snapshot),
                Screen::Calls { campaign_id, name } => lists::render_calls(frame, body, model, *campaign_id, name),
                Screen::DeadLetters => lists::render_dead_letters(frame, body, model),
            }
            if model.connection != Connection::Connected {
                // Stale data stays readable but visibly old.
                frame.buffer_mut().set_style(body, Style::new().add_modifier(Modifier::DIM));
            }
        }
        None => render_waiting(frame, body, model),
    }
    render_footer(frame, footer, model);
    if model.show_help {
        render_help(frame, area, model);
    }
    if let Some(confirm) = &model.confirm {
        render_question(frame, area, &confirm.question());
    }
    if !model.colors {
        strip_colors(frame.buffer_mut());
    }
}

/// Removes every colour, keeping the symbols and the modifiers (bold, reversed, dim), which
/// carry the selection and the emphasis without colour.
pub fn strip_colors(buffer: &mut Buffer) {
    for cell in buffer.content.iter_mut() {
        cell.set_fg(Color::Reset).set_bg(Color::Reset);
        cell.underline_color = Color::Reset;
    }
}

/// A bordered panel with a title and a column of space inside each border.
pub(super) fn panel<'a>(title: impl Into<Line<'a>>) -> Block<'a> {
    Block::bordered().title(title).padding(Padding::horizontal(1))
}

/// `text` cut to `width` columns, ending with `…` when it was cut.
pub fn fit(text: &str, width: usize) -> String {
    if Span::raw(text).width() <= width {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = Span::raw(c.to_string()).width();
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    if width > 0 {
        out.push('…');
    }
    out
}

fn status_color(system_status: &str) -> Color {
    match system_status {
        "healthy" => Color::Green,
        "at_capacity" => Color::Yellow,
        _ => Color::Red,
    }
}

/// `23:20:05Z`: the snapshot's time as the header shows it (UTC, like the service's timestamps).
pub(super) fn clock(snapshot: &Snapshot) -> String {
    snapshot.fetched_at.strftime("%H:%M:%SZ").to_string()
}

fn render_header(frame: &mut Frame, area: Rect, model: &Model) {
    let mut spans = vec![Span::styled(" callmgr ", Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)), Span::raw(format!(" {} ", model.url))];
    match &model.connection {
        Connection::Connecting => spans.push(Span::styled("connecting…", Style::new().fg(Color::Yellow))),
        Connection::Connected => {
            if let Some(snapshot) = &model.snapshot {
                let m = &snapshot.metrics;
                spans.push(Span::styled(format!("● {}", m.system_status), Style::new().fg(status_color(&m.system_status)).add_modifier(Modifier::BOLD)));
                spans.push(Span::raw(format!("  up {}  updated {}", uptime(m.uptime_seconds), clock(snapshot))));
            }
        }
        Connection::Disconnected { error, failed_polls } => {
            spans.push(Span::styled(
                format!("✖ disconnected — retrying every {} ({failed_polls} failed)", humantime::format_duration(model.interval)),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ));
            if let Some(snapshot) = &model.snapshot {
                spans.push(Span::raw(format!("  data from {}", clock(snapshot))));
            }
            spans.push(Span::styled(format!("  {error}"), Style::new().fg(Color::Red)));
        }
    }
    frame.render_widget(Line::from(spans), area);
}

/// The key hints of each screen, shown when there is no status to show.
fn hints(model: &Model) -> &'static str {
    match model.screen {
        Screen::Main => " ↑↓ select · p pause · r resume · s stop · o sort · / filter · Enter calls · d dead letters · ? help · q quit",
        Screen::Calls { .. } => " ↑↓ select · Esc back · d dead letters · ? help · q quit",
        Screen::DeadLetters => " ↑↓ select · r replay · A replay all · Esc back · ? help · q quit",
    }
}

fn render_footer(frame: &mut Frame, area: Rect, model: &Model) {
    let line = if model.editing_filter {
        Line::from(vec![
            Span::styled(" filter: ", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(format!("{}▏", model.filter)),
            Span::styled("  Enter keeps it · Esc clears it", Style::new().add_modifier(Modifier::DIM)),
        ])
    } else {
        match &model.status {
            Some(status) => {
                let (color, mark) = match status.kind {
                    StatusKind::Pending => (Color::Yellow, "…"),
                    StatusKind::Done => (Color::Green, "✔"),
                    StatusKind::Failed => (Color::Red, "✖"),
                };
                Line::from(Span::styled(format!(" {mark} {}", status.text), Style::new().fg(color)))
            }
            None => Line::from(Span::styled(hints(model), Style::new().add_modifier(Modifier::DIM))),
        }
    };
    frame.render_widget(line, area);
}

/// The body before the first answer, or while the service has never answered.
fn render_waiting(frame: &mut Frame, area: Rect, model: &Model) {
    let every = humantime::format_duration(model.interval).to_string();
    let (title, color, lines) = match &model.connection {
        Connection::Disconnected { error, failed_polls } => (
            " disconnected ",
            Color::Red,
            vec![
                Line::from(Span::styled("disconnected — retrying", Style::new().fg(Color::Red).add_modifier(Modifier::BOLD))),
                Line::from(""),
                Line::from(format!("{} did not answer: {error}", model.url)),
                Line::from(format!("trying again every {every} ({failed_polls} failed so far); q quits")),
            ],
        ),
        _ => (" connecting ", Color::Yellow, vec![Line::from(format!("connecting to {}…", model.url))]),
    };
    let height = lines.len() as u16 + 2;
    let popup = area.centered(Constraint::Percentage(80), Constraint::Length(height));
    let block = Block::bordered().title(title).border_style(Style::new().fg(color));
    frame.render_widget(Paragraph::new(lines).block(block).alignment(Alignment::Center).wrap(Wrap { trim: true }), popup);
}

fn render_body(frame: &mut Frame, area: Rect, model: &Model, snapshot: &Snapshot) {
    let sparks_height = if area.height >= SHORT_BODY_HEIGHT { SPARKLINE_ROW_HEIGHT } else { SPARKLINE_ROW_HEIGHT_SHORT };
    // One more line in the queue panel when the service purges old calls.
    let top_height = TOP_ROW_HEIGHT + u16::from(snapshot.metrics.retention.is_some());
    let rest = area.height.saturating_sub(top_height + sparks_height);
    // Borders and header, plus one line per campaign (or the "no campaigns" line).
    let table_wanted = model.rows.len().max(1) as u16 + 3;
    let details_height = rest.saturating_sub(table_wanted).clamp(DETAIL_ROW_HEIGHT_MIN, DETAIL_ROW_HEIGHT_MAX);
    let [top, sparks, details, table] =
        Layout::vertical([Constraint::Length(top_height), Constraint::Length(sparks_height), Constraint::Length(details_height), Constraint::Min(0)])
            .areas(area);
    let m = &snapshot.metrics;
    let [slots, queue] = Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(top);
    render_slots(frame, slots, model, m);
    render_queue(frame, queue, m);
    let [dials, completions, usage] = Layout::horizontal([Constraint::Ratio(1, 3); 3]).areas(sparks);
    let window = m.rates.window_seconds;
    render_sparkline(frame, dials, &format!(" Dials/s · {:.2} avg {window}s ", m.rates.dials_per_second), &m.series.dials, None, Color::Cyan);
    // Completions are calls that ended PICKED or FAILED; cancellations are counted apart.
    render_sparkline(
        frame,
        completions,
        &format!(" Completions/s · {:.2} avg {window}s ", m.rates.completions_per_second),
        &m.series.completions,
        None,
        Color::Green,
    );
    let history: Vec<u64> = model.slot_history.iter().copied().collect();
    render_sparkline(frame, usage, " Slots in use (per poll) ", &history, Some(m.max_concurrent_calls), Color::Magenta);
    let [outcomes, provider] = Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(details);
    render_outcomes(frame, outcomes, model);
    render_provider(frame, provider, m);
    render_campaigns(frame, table, model, snapshot);
}

fn render_slots(frame: &mut Frame, area: Rect, model: &Model, m: &api::Metrics) {
    let block = panel(" Slots ");
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [gauge_area, note_area] = Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(inner);
    let ratio = if m.max_concurrent_calls == 0 { 0.0 } else { (m.current_concurrent_calls as f64 / m.max_concurrent_calls as f64).clamp(0.0, 1.0) };
    let color = match ratio {
        r if r >= 1.0 => Color::Red,
        r if r >= 0.8 => Color::Yellow,
        _ => Color::Green,
    };
    let label = format!("{} / {} in use ({:.0}%)", m.current_concurrent_calls, m.max_concurrent_calls, ratio * 100.0);
    frame.render_widget(Gauge::default().ratio(ratio).label(label).gauge_style(Style::new().fg(color).bg(Color::DarkGray)), gauge_area);
    let peak = model.today().map(|d| d.peak_concurrent_calls).unwrap_or(0);
    frame.render_widget(Line::from(format!("peak today {peak} · accepted {:.2}/s", m.rates.accepted_per_second)), note_area);
}

fn render_queue(frame: &mut Frame, area: Rect, m: &api::Metrics) {
    let number = |label: &str, value: String, color: Color| {
        vec![Span::raw(format!("{label} ")), Span::styled(value, Style::new().fg(color).add_modifier(Modifier::BOLD)), Span::raw("  ")]
    };
    let first: Vec<Span> = [
        number("queued", thousands(m.queue_depth), Color::Cyan),
        number("retrying", thousands(m.retrying), Color::Yellow),
        number("dead letters", thousands(m.dead_letters), if m.dead_letters > 0 { Color::Red } else { Color::Green }),
        number("writer queue", thousands(m.writer_queue), Color::Cyan),
    ]
    .concat();
    // An older service reports only the paused hold, under its older name.
    let paused = m.held.paused.max(m.held_by_paused_campaigns);
    let held = paused + m.held.outside_calling_hours + m.held.contact_cap;
    let breakdown = format!("(paused {}, hours {}, cap {})", thousands(paused), thousands(m.held.outside_calling_hours), thousands(m.held.contact_cap));
    let mut second: Vec<Span> = number("held", thousands(held), Color::Yellow);
    second.insert(2, Span::raw(format!(" {breakdown}")));
    second.extend(number("cancelled", format!("{:.2}/s", m.rates.cancellations_per_second), Color::Magenta));
    second.extend(number("dnc", thousands(m.cancelled_dnc), Color::Magenta));
    let mut lines = vec![Line::from(first), Line::from(second)];
    if let Some(r) = &m.retention {
        let mut third = number(&format!("retention {} purged", r.final_calls), thousands(r.purged_total), Color::Cyan);
        third.push(Span::raw(if r.running { "purging" } else { "idle" }.to_string()));
        if let Some(at) = &r.last_run_at {
            third.push(Span::raw(format!(" · last {} ({})", clock_of(at), thousands(r.last_run_purged))));
        }
        if let Some(error) = &r.last_error {
            third.push(Span::styled(format!(" · {error}"), Style::new().fg(Color::Red)));
        }
        lines.push(Line::from(third));
    }
    frame.render_widget(Paragraph::new(lines).block(panel(" Queue ")), area);
}

fn render_sparkline(frame: &mut Frame, area: Rect, title: &str, data: &[u64], max: Option<u64>, color: Color) {
    let block = Block::bordered().title(title.to_string());
    // The newest points are at the end; show as many of them as fit.
    let width = block.inner(area).width as usize;
    let tail = &data[data.len().saturating_sub(width)..];
    let mut sparkline = Sparkline::default().block(block).data(tail).style(Style::new().fg(color));
    if let Some(max) = max.filter(|m| *m > 0) {
        sparkline = sparkline.max(max);
    }
    frame.render_widget(sparkline, area);
}

fn render_outcomes(frame: &mut Frame, area: Rect, model: &Model) {
    let today = model.today().cloned().unwrap_or_default();
    let title = if today.date.is_empty() { " Outcomes today ".to_string() } else { format!(" Outcomes today ({}) ", today.date) };
    let block = panel(title);
    let inner = block.inner(area);
    let counts = [today.total_calls_picked, today.total_calls_disconnected, today.total_calls_rnr, today.total_calls_failed];
    let total: u64 = counts.iter().sum();
    let colors = [Color::Green, Color::Yellow, Color::Blue, Color::Red];
    // "DISCONNECTED 1,234,567 100% " takes 28 columns; the bar gets the rest.
    let bar_width = (inner.width as usize).saturating_sub(28);
    let mut lines: Vec<Line> = OUTCOMES
        .iter()
        .zip(counts)
        .zip(colors)
        .map(|((name, count), color)| {
            let share = if total == 0 { 0.0 } else { count as f64 / total as f64 };
            let bar = "█".repeat((share * bar_width as f64).round() as usize);
            Line::from(vec![Span::raw(format!("{name:<12} {:>9} {:>4.0}% ", thousands(count), share * 100.0)), Span::styled(bar, Style::new().fg(color))])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from(format!(
        "accepted {} · dialled {} · retries {}",
        thousands(today.total_calls_initiated),
        thousands(today.total_calls_dialled),
        thousands(today.total_retries)
    )));
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn render_provider(frame: &mut Frame, area: Rect, m: &api::Metrics) {
    let p = &m.provider;
    let ms = |v: Option<u32>| v.map(|v| format!("{v} ms")).unwrap_or_else(|| "–".into());
    let error_color = if p.transport_errors + p.refusals > 0 { Color::Red } else { Color::Green };
    let mut lines = vec![
        Line::from(format!("latency p50 {} · p99 {}", ms(p.latency_ms_p50), ms(p.latency_ms_p99))),
        Line::from(Span::styled(
            format!("transport errors {} · refusals {}", thousands(p.transport_errors), thousands(p.refusals)),
            Style::new().fg(error_color),
        )),
    ];
    if p.recent_errors.is_empty() {
        lines.push(Line::from(Span::styled("no recent errors", Style::new().add_modifier(Modifier::DIM))));
    } else {
        // Newest first; long messages wrap, and what does not fit is cut at the bottom.
        let room = area.height.saturating_sub(2) as usize;
        for error in p.recent_errors.iter().take(room) {
            lines.push(Line::from(vec![Span::styled(format!("{} ", clock_of(&error.at)), Style::new().fg(Color::Red)), Span::raw(error.message.clone())]));
        }
    }
    frame.render_widget(Paragraph::new(lines).block(panel(" Provider ")).wrap(Wrap { trim: false }), area);
}

const COLUMNS: usize = 13;
const HEADERS: [&str; COLUMNS] =
    ["ID", "Name", "Status", "Numbers", "Calls", "Active", "Queued", "Retrying", "Picked", "Failed", "Cancelled", "Done", "Waiting on"];
const NAME_COLUMN: usize = 1;
const STATUS_COLUMN: usize = 2;
const NOTE_COLUMN: usize = 12;
/// Columns left out, in this order, when the terminal is too narrow: Numbers, Calls, Failed,
/// Retrying, Active, Queued.
const DROP_ORDER: [usize; 6] = [3, 4, 9, 7, 5, 6];
/// The name column keeps at least this much, or its longest name up to the maximum, before a
/// number column is dropped; longer names end with `…`.
const NAME_WIDTH_MIN: u16 = 10;
const NAME_WIDTH_WANTED_MAX: u16 = 22;
/// The "Waiting on" column keeps at least this much before a number column is dropped.
const NOTE_WIDTH_MIN: u16 = 28;
/// Columns a long note may take from the name (down to its minimum) and the number columns.
const NOTE_WIDTH_WANTED_MAX: u16 = 48;
const COLUMN_SPACING: u16 = 1;
/// `▶ ` in front of the selected row.
const HIGHLIGHT_SYMBOL_WIDTH: u16 = 2;

fn row_cells(r: &CampaignRow, model: &Model, snapshot: &Snapshot) -> [String; COLUMNS] {
    [
        r.id.to_string(),
        r.name.clone(),
        r.status.clone(),
        thousands(r.numbers),
        thousands(r.calls),
        thousands(r.in_flight),
        thousands(r.queued),
        thousands(r.retrying),
        thousands(r.picked),
        thousands(r.failed),
        thousands(r.cancelled),
        r.completed_percent.map(|p| format!("{p:.1}%")).unwrap_or_else(|| "–".into()),
        r.waiting_note(snapshot.fetched_at, &model.zone),
    ]
}

fn render_campaigns(frame: &mut Frame, area: Rect, model: &Model, snapshot: &Snapshot) {
    let shown = model.rows.len();
    let title = if !model.filter.is_empty() {
        format!(" Campaigns ({shown} matching) · {} · name contains “{}” ", model.sort.label(), model.filter)
    } else if shown < snapshot.campaigns_listed || snapshot.campaigns_truncated {
        let more = if snapshot.campaigns_truncated { "+" } else { "" };
        format!(" Campaigns (showing {shown} of {}{more}) · {} ", snapshot.campaigns_listed, model.sort.label())
    } else {
        format!(" Campaigns ({shown}) · {} ", model.sort.label())
    };
    let block = Block::bordered().title(title);
    if model.rows.is_empty() {
        let text = if model.filter.is_empty() {
            "no campaigns yet: create one with POST /api/v1/campaigns/"
        } else {
            "no campaign name matches the filter (Esc clears it)"
        };
        frame.render_widget(Paragraph::new(text).block(block).style(Style::new().add_modifier(Modifier::DIM)), area);
        return;
    }
    let cells: Vec<[String; COLUMNS]> = model.rows.iter().map(|r| row_cells(r, model, snapshot)).collect();
    let widest_of: Vec<u16> = (0..COLUMNS)
        .map(|column| cells.iter().map(|c| Span::raw(c[column].as_str()).width()).chain([HEADERS[column].len()]).max().unwrap_or(0) as u16)
        .collect();
    let widest = |column: usize| widest_of[column];
    // Every number column is as wide as its widest cell; the name gets up to its wanted width
    // and "Waiting on" the rest. On a narrow terminal the least needed columns go first.
    let room = block.inner(area).width.saturating_sub(HIGHLIGHT_SYMBOL_WIDTH);
    let name_wanted = widest(NAME_COLUMN).clamp(NAME_WIDTH_MIN, NAME_WIDTH_WANTED_MAX);
    let mut shown: Vec<usize> = (0..COLUMNS).collect();
    let fixed = |shown: &[usize]| -> u16 {
        shown.iter().filter(|&&c| c != NAME_COLUMN && c != NOTE_COLUMN).map(|&c| widest(c)).sum::<u16>() + COLUMN_SPACING * (shown.len() as u16 - 1)
    };
    // Room for the name at its wanted width and the note at its minimum, and for the name at
    // its minimum and the note's whole text (up to its maximum).
    let note_wanted = widest(NOTE_COLUMN).clamp(NOTE_WIDTH_MIN, NOTE_WIDTH_WANTED_MAX);
    let wanted = (name_wanted + NOTE_WIDTH_MIN).max(NAME_WIDTH_MIN + note_wanted);
    for column in DROP_ORDER {
        if fixed(&shown) + wanted <= room {
            break;
        }
        shown.retain(|&c| c != column);
    }
    // The note gets what its longest text needs, taken from the name down to its minimum.
    let left = room.saturating_sub(fixed(&shown));
    let name_width = left.saturating_sub(widest(NOTE_COLUMN)).clamp(NAME_WIDTH_MIN.min(left), name_wanted.min(left));
    let note_width = left.saturating_sub(name_width);
    let width_of = |c: usize| match c {
        NAME_COLUMN => name_width,
        NOTE_COLUMN => note_width,
        _ => widest(c),
    };
    let widths: Vec<Constraint> = shown.iter().map(|&c| Constraint::Length(width_of(c))).collect();
    let cell = |column: usize, text: String| match column {
        NAME_COLUMN | NOTE_COLUMN => Cell::from(fit(&text, width_of(column) as usize)),
        STATUS_COLUMN => {
            let style = match text.as_str() {
                "active" => Style::new().fg(Color::Green),
                "paused" => Style::new().fg(Color::Yellow),
                "Status" => Style::new(),
                _ => Style::new().add_modifier(Modifier::DIM),
            };
            Cell::from(text).style(style)
        }
        _ => Cell::from(Line::from(text).alignment(Alignment::Right)),
    };
    let header = Row::new(shown.iter().map(|&c| cell(c, HEADERS[c].to_string()))).style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
    let rows = cells.into_iter().map(|mut texts| Row::new(shown.iter().map(|&c| cell(c, std::mem::take(&mut texts[c]))).collect::<Vec<_>>()));
    let table = Table::new(rows, widths)
        .header(header)
        .block(block)
        .column_spacing(COLUMN_SPACING)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("▶ ");
    let mut state = TableState::default().with_selected(model.selected_index());
    frame.render_stateful_widget(table, area, &mut state);
}

fn render_help(frame: &mut Frame, area: Rect, model: &Model) {
    let mut lines = Vec::new();
    let mut section = "";
    for (screen, keys, what) in KEYS {
        if screen != section {
            section = screen;
            lines.push(Line::from(Span::styled(format!(" {screen}"), Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD))));
        }
        lines.push(Line::from(vec![Span::styled(format!("  {keys:<12}"), Style::new().add_modifier(Modifier::BOLD)), Span::raw(what.to_string())]));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(format!(" polling {} every {}", model.url, humantime::format_duration(model.interval))));
    lines.push(Line::from(" paused campaigns keep their calls; resume dials them again"));
    let height = lines.len() as u16 + 2;
    let popup = area.centered(Constraint::Length(68.min(area.width)), Constraint::Length(height.min(area.height)));
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(" Help — keys ").border_style(Style::new().fg(Color::Cyan))), popup);
}

fn render_question(frame: &mut Frame, area: Rect, question: &str) {
    let lines = vec![
        Line::from(""),
        Line::from(question.to_string()),
        Line::from(""),
        Line::from(vec![
            Span::styled("y", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(" yes · "),
            Span::styled("n", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(" no"),
        ]),
    ];
    let popup = area.centered(Constraint::Length(72.min(area.width)), Constraint::Length(8.min(area.height)));
    frame.render_widget(Clear, popup);
    let block = Block::bordered().title(" Confirm ").border_style(Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)).padding(Padding::horizontal(1));
    frame.render_widget(Paragraph::new(lines).block(block).alignment(Alignment::Center).wrap(Wrap { trim: true }), popup);
}

/// `2d 03h`, `1h 02m`, `5m 03s`, `42s`.
pub fn uptime(seconds: u64) -> String {
    let (d, h, m, s) = (seconds / 86_400, seconds / 3_600 % 24, seconds / 60 % 60, seconds % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s:02}s"),
        (0, _, _) => format!("{h}h {m:02}m"),
        _ => format!("{d}d {h:02}h"),
    }
}

/// `2026-11-21T23:20:13.075Z` → `23:20:13Z` (the service writes UTC).
pub(super) fn clock_of(rfc3339: &str) -> String {
    match rfc3339.get(11..19) {
        Some(time) => format!("{time}Z"),
        None => rfc3339.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::Confirm;
    use super::super::poller::Update;
    use super::super::test_support::*;
    use super::*;

    #[test]
    fn retention_gets_a_line_in_the_queue_panel_only_when_configured() {
        let screen = draw(&connected_model(METRICS), 120, 40);
        assert!(!screen.iter().any(|line| line.contains("retention")), "no retention line without retention");
        let mut metrics: serde_json::Value = serde_json::from_str(METRICS).unwrap();
        metrics["retention"] = serde_json::json!({
            "final_calls": "180d", "purged_total": 12345, "running": true,
            "last_run_at": "2026-11-21T23:20:13.075Z", "last_run_purged": 5000, "archive_files": 13
        });
        let screen = draw(&connected_model(&metrics.to_string()), 120, 40);
        let (queue_row, queue_col) = expect_at(&screen, " Queue ");
        let (row, col) = expect_at(&screen, "retention 180d purged 12,345  purging · last 23:20:13Z (5,000)");
        assert_eq!(row, queue_row + 3, "the third line of the Queue panel");
        assert!(col > queue_col);
    }

    #[test]
    fn slot_gauge_and_queue_counts_sit_in_their_panels() {
        let screen = draw(&connected_model(METRICS), 120, 40);
        let (slots_row, slots_col) = expect_at(&screen, " Slots ");
        let (queue_row, queue_col) = expect_at(&screen, " Queue ");
        assert_eq!(slots_row, queue_row, "the two panels share a row");
        let (gauge_row, gauge_col) = expect_at(&screen, "8 / 20 in use (40%)");
        assert_eq!(gauge_row, slots_row + 1, "the gauge is the Slots panel's first line");
        assert!(slots_col < gauge_col && gauge_col < queue_col, "the gauge is inside the Slots panel");
        for text in ["queued 36", "retrying 28", "dead letters 0", "held 30 (paused 30, hours 0, cap 0)", "cancelled 1.00/s"] {
            let (row, col) = expect_at(&screen, text);
            assert!(row > queue_row && row <= queue_row + 2 && col >= queue_col, "`{text}` is inside the Queue panel");
        }
        let (header_row, _) = expect_at(&screen, "● healthy");
        assert_eq!(header_row, 0);
        expect_at(&screen, "updated 01:27:37Z");
    }

    #[test]
    fn campaign_rows_show_counts_and_why_they_wait() {
        let screen = draw(&connected_model(METRICS), 120, 40);
        let (title_row, _) = expect_at(&screen, " Campaigns (4) · running first ");
        let (header_row, _) = expect_at(&screen, "Waiting on");
        assert_eq!(header_row, title_row + 1);
        // Running campaigns first (newest first), then paused, then stopped.
        let rows: Vec<usize> = ["Quarterly", "Spring renewals", "Survey – NPS", "Winback Q4"].iter().map(|name| expect_at(&screen, name).0).collect();
        assert_eq!(rows, [header_row + 1, header_row + 2, header_row + 3, header_row + 4]);
        assert!(screen[rows[0]].contains("▶"), "the first row is selected: {}", screen[rows[0]]);
        let spring = &screen[rows[1]];
        for cell in ["active", "85", "27", "70.8%", "5 waiting for a slot"] {
            assert!(spring.contains(cell), "`{cell}` missing from the Spring renewals row: {spring}");
        }
        assert!(screen[rows[2]].contains("paused: 30 held until resumed"), "{}", screen[rows[2]]);
        assert!(screen[rows[3]].contains("stopped") && screen[rows[3]].contains(" 60 ") && screen[rows[3]].contains("0.0%"), "{}", screen[rows[3]]);
    }

    #[test]
    fn long_names_end_with_an_ellipsis() {
        let screen = draw(&connected_model(METRICS), 120, 40);
        let (row, _) = expect_at(&screen, "Quarterly satisfactio…");
        assert!(!screen[row].contains("EMEA"), "{}", screen[row]);
        assert_eq!(fit("Quarterly", 20), "Quarterly");
        assert_eq!(fit("Quarterly", 5), "Quar…");
        assert_eq!(fit("Survey – NPS", 8), "Survey …");
        assert_eq!(fit("日本語のキャンペーン", 7), "日本語…", "wide characters count two columns");
        assert_eq!(fit("x", 0), "");
    }

    /// A stopped 50,000-call campaign: its cancelled calls are neither completions nor "done".
    #[test]
    fn a_stopped_campaign_is_not_shown_done_and_cancellations_are_not_completions() {
        let mut stopped = recorded_snapshot(METRICS_STOPPED);
        stopped.campaigns = vec![campaign(CAMPAIGN_STOPPED)];
        stopped.campaigns_listed = 1;
        stopped.fetched_at = recorded_at("stopped");
        let screen = draw(&model_with(stopped), 120, 40);
        check_snapshot("screen_stopped", &screen);
        let (row, _) = expect_at(&screen, "Black Friday blast");
        let line = &screen[row];
        assert!(line.contains("49,966") && line.contains(" 0.1% "), "cancelled apart, 34 of 50,000 completed: {line}");
        assert!(!line.contains("100"), "not done: {line}");
        expect_at(&screen, "Completions/s · 0.57 avg 60s");
        expect_at(&screen, "cancelled 832.77/s");
    }

    #[test]
    fn a_held_campaign_says_how_many_wait_and_until_when() {
        let mut snapshot = recorded_snapshot(METRICS);
        let held = campaign(CAMPAIGN_HELD);
        let next: jiff::Timestamp = held.stats.as_ref().and_then(|s| s.next_dial_at.as_deref()).unwrap().parse().unwrap();
        snapshot.fetched_at = next - jiff::SignedDuration::from_hours(3);
        snapshot.campaigns.insert(0, held);
        let screen = draw(&model_with(snapshot), 120, 40);
        check_snapshot("screen_held", &screen);
        let (row, _) = expect_at(&screen, "Night owls");
        assert!(screen[row].contains("held 1,204 until 08:00 local (calling hours)"), "{}", screen[row]);
    }

    #[test]
    fn outcome_mix_rates_and_provider_latency() {
        let screen = draw(&connected_model(METRICS), 120, 40);
        let (title_row, title_col) = expect_at(&screen, " Outcomes today (2026-12-02) ");
        let picked = expect_at(&screen, "PICKED");
        assert_eq!(picked, (title_row + 1, title_col + 1), "inside the panel, after its padding");
        // 88 of 124 outcomes.
        assert!(screen[picked.0].contains("88   71%"), "{}", screen[picked.0]);
        for (name, count) in [("DISCONNECTED", "22"), ("RNR", "5"), ("FAILED", "9")] {
            let (row, _) = expect_at(&screen, &format!("{name:<12}"));
            assert!(row > title_row && row <= title_row + 4 && screen[row].contains(count), "{}", screen[row]);
        }
        expect_at(&screen, "Dials/s · 2.20 avg 60s");
        expect_at(&screen, "Completions/s · 1.47 avg 60s");
        let (provider_row, provider_col) = expect_at(&screen, " Provider ");
        assert_eq!(expect_at(&screen, "latency p50 1 ms · p99 21 ms"), (provider_row + 1, provider_col + 1));
        expect_at(&screen, "no recent errors");
    }

    #[test]
    fn provider_errors_and_dead_letters_are_listed() {
        let screen = draw(&connected_model(METRICS_PROVIDER_DOWN), 120, 40);
        expect_at(&screen, "transport errors 12 · refusals 0");
        expect_at(&screen, "dead letters 4");
        let (provider_row, _) = expect_at(&screen, " Provider ");
        let (row, _) = expect_at(&screen, "01:28:5");
        assert_eq!(row, provider_row + 3, "the newest error comes first");
        expect_at(&screen, "Connection refused");
    }

    #[test]
    fn never_connected_shows_disconnected_and_retrying() {
        let mut model = Model::new("http://127.0.0.1:8000", std::time::Duration::from_secs(1));
        let screen = draw(&model, 120, 40);
        expect_at(&screen, "connecting to http://127.0.0.1:8000…");
        model.apply(Update::PollFailed("io: Connection refused (os error 111)".into()));
        model.apply(Update::PollFailed("io: Connection refused (os error 111)".into()));
        let screen = draw(&model, 120, 40);
        let (banner_row, _) = expect_at(&screen, "✖ disconnected — retrying every 1s (2 failed)");
        assert_eq!(banner_row, 0);
        let body_row = screen.iter().skip(1).position(|line| line.contains("disconnected — retrying"));
        assert!(body_row.is_some(), "the body says it too:\n{}", screen.join("\n"));
        expect_at(&screen, "Connection refused");
        assert_eq!(find(&screen, " Slots "), None, "no panels without data");
    }

    #[test]
    fn losing_the_service_keeps_the_last_data_under_a_banner() {
        let mut model = connected_model(METRICS);
        model.apply(Update::PollFailed("io: Connection refused (os error 111)".into()));
        let screen = draw(&model, 120, 40);
        let (row, _) = expect_at(&screen, "disconnected — retrying");
        assert_eq!(row, 0);
        expect_at(&screen, "data from 01:27:37Z");
        expect_at(&screen, "8 / 20 in use (40%)");
        expect_at(&screen, "Spring renewals");
        // Reconnecting clears the banner.
        model.apply(Update::Snapshot(Box::new(recorded_snapshot(METRICS))));
        assert_eq!(find(&draw(&model, 120, 40), "disconnected"), None);
    }

    #[test]
    fn help_lists_every_key_over_the_dashboard() {
        let mut model = connected_model(METRICS);
        model.show_help = true;
        let screen = draw(&model, 120, 40);
        check_snapshot("screen_help", &screen);
        let (title_row, title_col) = expect_at(&screen, " Help — keys ");
        for (_, keys, what) in KEYS {
            let (row, col) = expect_at(&screen, what);
            assert!(row > title_row && col > title_col, "`{what}` is inside the overlay");
            assert!(screen[row].contains(keys), "`{keys}` is on the line of `{what}`: {}", screen[row]);
        }
        expect_at(&screen, "polling http://127.0.0.1:8000 every 1s");
        assert_eq!(find(&draw(&connected_model(METRICS), 120, 40), "Help — keys"), None);
    }

    #[test]
    fn stop_asks_before_it_acts() {
        let mut model = connected_model(METRICS);
        model.confirm = Some(Confirm::Stop { id: 1, name: "Spring renewals".into() });
        let screen = draw(&model, 120, 40);
        let (title_row, _) = expect_at(&screen, " Confirm ");
        let (row, _) = expect_at(&screen, "Stop campaign 1 (Spring renewals)? Its waiting calls are cancelled");
        assert!(row > title_row);
        expect_at(&screen, "y yes · n no");
    }

    #[test]
    fn the_filter_shows_while_typed_and_in_the_table_title() {
        let mut model = connected_model(METRICS);
        model.editing_filter = true;
        model.filter = "spr".into();
        model.refresh_rows();
        let screen = draw(&model, 120, 40);
        assert_eq!(expect_at(&screen, " filter: spr▏").0, 39);
        expect_at(&screen, "Campaigns (1 matching) · running first · name contains “spr”");
        assert_eq!(find(&screen, "Winback"), None);
        model.filter = "zzz".into();
        model.refresh_rows();
        expect_at(&draw(&model, 120, 40), "no campaign name matches the filter (Esc clears it)");
    }

    #[test]
    fn status_line_shows_action_results() {
        let mut model = connected_model(METRICS);
        model.apply(Update::ActionDone { message: "pause campaign 2 (Winback Q4) failed: HTTP 409 conflict: Campaign is stopped".into(), ok: false });
        let screen = draw(&model, 120, 40);
        let (row, _) = expect_at(&screen, "✖ pause campaign 2 (Winback Q4) failed: HTTP 409 conflict: Campaign is stopped");
        assert_eq!(row, 39, "the status line is the last row");
        assert_eq!(find(&screen, "p pause"), None, "the result replaces the key hints");
    }

    #[test]
    fn a_smaller_terminal_still_shows_gauge_and_campaigns() {
        let screen = draw(&connected_model(METRICS), 80, 24);
        expect_at(&screen, "8 / 20 in use (40%)");
        for name in ["Quarterly", "Spring", "Survey"] {
            expect_at(&screen, name);
        }
        let (header_row, _) = expect_at(&screen, "Waiting on");
        assert_eq!(find(&screen, "Retrying"), None, "the least needed columns gave way: {}", screen[header_row]);
        let screen = draw(&connected_model(METRICS), 50, 10);
        expect_at(&screen, "terminal too small: 50x10");
    }

    #[test]
    fn connected_screen_matches_snapshot() {
        check_snapshot("screen_connected", &draw(&connected_model(METRICS), 120, 40));
    }

    /// `NO_COLOR`: the same screen, without a single colour; the selection stays visible.
    #[test]
    fn no_color_draws_no_colour() {
        let colored = |buffer: &Buffer| buffer.content.iter().filter(|c| c.fg != Color::Reset || c.bg != Color::Reset).count();
        let mut model = connected_model(METRICS_PROVIDER_DOWN);
        model.show_help = true;
        assert!(colored(&draw_buffer(&model, 120, 40)) > 100, "colours by default");
        model.colors = false;
        let plain = draw_buffer(&model, 120, 40);
        assert_eq!(colored(&plain), 0, "no cell has a colour");
        model.show_help = false;
        let plain = draw_buffer(&model, 120, 40);
        assert!(plain.content.iter().any(|c| c.modifier.contains(Modifier::REVERSED) && c.symbol() == "▶"), "the selection is drawn reversed");
        assert_eq!(
            draw(&model, 120, 40),
            {
                model.colors = true;
                draw(&model, 120, 40)
            },
            "the same text"
        );
    }

    #[test]
    fn numbers_read_easily() {
        assert_eq!(uptime(42), "42s");
        assert_eq!(uptime(303), "5m 03s");
        assert_eq!(uptime(3_720), "1h 02m");
        assert_eq!(uptime(2 * 86_400 + 3 * 3_600), "2d 03h");
        assert_eq!(clock_of("2026-11-21T23:20:13.075Z"), "23:20:13Z");
    }
}
