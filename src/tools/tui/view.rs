//! Pure rendering: `render(frame, &Model)` draws the whole screen from the model and nothing
//! else. It reads no clock, does no I/O and changes no state, so tests render it into a
//! `TestBackend` from recorded API answers.

use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, Gauge, Padding, Paragraph, Row, Sparkline, Table, TableState, Wrap};

use super::client::{Metrics, Snapshot};
use super::model::{CampaignRow, Connection, Model, StatusKind};

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
            render_body(frame, body, model, snapshot);
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
}

/// A bordered panel with a title and a column of space inside each border.
fn panel<'a>(title: impl Into<Line<'a>>) -> Block<'a> {
    Block::bordered().title(title).padding(Padding::horizontal(1))
}

fn status_color(system_status: &str) -> Color {
    match system_status {
        "healthy" => Color::Green,
        "at_capacity" => Color::Yellow,
        _ => Color::Red,
    }
}

fn render_header(frame: &mut Frame, area: Rect, model: &Model) {
    let mut spans = vec![Span::styled(" callmgr ", Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)), Span::raw(format!(" {} ", model.url))];
    match &model.connection {
        Connection::Connecting => spans.push(Span::styled("connecting…", Style::new().fg(Color::Yellow))),
        Connection::Connected => {
            if let Some(snapshot) = &model.snapshot {
                let m = &snapshot.metrics;
                spans.push(Span::styled(format!("● {}", m.system_status), Style::new().fg(status_color(&m.system_status)).add_modifier(Modifier::BOLD)));
                spans.push(Span::raw(format!("  up {}  updated {}", uptime(m.uptime_seconds), snapshot.fetched_at)));
            }
        }
        Connection::Disconnected { error, failed_polls } => {
            spans.push(Span::styled(
                format!("✖ disconnected — retrying every {} ({failed_polls} failed)", humantime::format_duration(model.interval)),
                Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            ));
            if let Some(snapshot) = &model.snapshot {
                spans.push(Span::raw(format!("  data from {}", snapshot.fetched_at)));
            }
            spans.push(Span::styled(format!("  {error}"), Style::new().fg(Color::Red)));
        }
    }
    frame.render_widget(Line::from(spans), area);
}

fn render_footer(frame: &mut Frame, area: Rect, model: &Model) {
    let line = match &model.status {
        Some(status) => {
            let color = match status.kind {
                StatusKind::Pending => Color::Yellow,
                StatusKind::Done => Color::Green,
                StatusKind::Failed => Color::Red,
            };
            Line::from(Span::styled(format!(" {}", status.text), Style::new().fg(color)))
        }
        None => Line::from(Span::styled(" ↑↓/jk select · p pause · r resume · ? help · q quit", Style::new().add_modifier(Modifier::DIM))),
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
    let rest = area.height.saturating_sub(TOP_ROW_HEIGHT + sparks_height);
    // Borders and header, plus one line per campaign (or the "no campaigns" line).
    let table_wanted = model.rows.len().max(1) as u16 + 3;
    let details_height = rest.saturating_sub(table_wanted).clamp(DETAIL_ROW_HEIGHT_MIN, DETAIL_ROW_HEIGHT_MAX);
    let [top, sparks, details, table] =
        Layout::vertical([Constraint::Length(TOP_ROW_HEIGHT), Constraint::Length(sparks_height), Constraint::Length(details_height), Constraint::Min(0)])
            .areas(area);
    let m = &snapshot.metrics;
    let [slots, queue] = Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(top);
    render_slots(frame, slots, model, m);
    render_queue(frame, queue, m);
    let [dials, completions, usage] = Layout::horizontal([Constraint::Ratio(1, 3); 3]).areas(sparks);
    let window = m.rates.window_seconds;
    render_sparkline(frame, dials, &format!(" Dials/s · {:.2} avg {window}s ", m.rates.dials_per_second), &m.series.dials, None, Color::Cyan);
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

fn render_slots(frame: &mut Frame, area: Rect, model: &Model, m: &Metrics) {
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

fn render_queue(frame: &mut Frame, area: Rect, m: &Metrics) {
    let number = |label: &str, value: u64, color: Color| {
        vec![Span::raw(format!("{label} ")), Span::styled(thousands(value), Style::new().fg(color).add_modifier(Modifier::BOLD)), Span::raw("  ")]
    };
    let first: Vec<Span> = [
        number("queued", m.queue_depth, Color::Cyan),
        number("retrying", m.retrying, Color::Yellow),
        number("held by paused", m.held_by_paused_campaigns, Color::Yellow),
    ]
    .concat();
    let dead_color = if m.dead_letters > 0 { Color::Red } else { Color::Green };
    let second: Vec<Span> = [number("dead letters", m.dead_letters, dead_color), number("writer queue", m.writer_queue, Color::Cyan)].concat();
    frame.render_widget(Paragraph::new(vec![Line::from(first), Line::from(second)]).block(panel(" Queue ")), area);
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

fn render_provider(frame: &mut Frame, area: Rect, m: &Metrics) {
    let p = &m.provider;
    let ms = |v: Option<u64>| v.map(|v| format!("{v} ms")).unwrap_or_else(|| "–".into());
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

fn render_campaigns(frame: &mut Frame, area: Rect, model: &Model, snapshot: &Snapshot) {
    let shown = model.rows.len();
    let title = if shown < snapshot.campaigns_listed || snapshot.campaigns_truncated {
        let more = if snapshot.campaigns_truncated { "+" } else { "" };
        format!(" Campaigns (showing {shown} of {}{more}: running first, newest first) ", snapshot.campaigns_listed)
    } else {
        format!(" Campaigns ({shown}) ")
    };
    let block = Block::bordered().title(title);
    if model.rows.is_empty() {
        let text = Paragraph::new("no campaigns yet: create one with POST /api/v1/campaigns/").block(block).style(Style::new().add_modifier(Modifier::DIM));
        frame.render_widget(text, area);
        return;
    }
    let cells: Vec<[String; COLUMNS]> = model.rows.iter().map(row_cells).collect();
    let widest = |column: usize| cells.iter().map(|c| c[column].chars().count()).chain([HEADERS[column].len()]).max().unwrap_or(0) as u16;
    // Every column but the name is as wide as its widest cell and the name takes the rest; on a
    // narrow terminal the least needed columns go until the name has room.
    let room = block.inner(area).width.saturating_sub(HIGHLIGHT_SYMBOL_WIDTH);
    let mut shown: Vec<usize> = (0..COLUMNS).collect();
    let name_wanted = widest(NAME_COLUMN).clamp(NAME_WIDTH_MIN, NAME_WIDTH_WANTED_MAX);
    let needed = |shown: &[usize]| -> u16 {
        shown.iter().map(|&c| if c == NAME_COLUMN { name_wanted } else { widest(c) }).sum::<u16>() + COLUMN_SPACING * (shown.len() as u16 - 1)
    };
    for column in DROP_ORDER {
        if needed(&shown) <= room {
            break;
        }
        shown.retain(|&c| c != column);
    }
    let widths: Vec<Constraint> = shown.iter().map(|&c| if c == NAME_COLUMN { Constraint::Fill(1) } else { Constraint::Length(widest(c)) }).collect();
    let cell = |column: usize, text: String| match column {
        NAME_COLUMN => Cell::from(text),
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

const COLUMNS: usize = 11;
const HEADERS: [&str; COLUMNS] = ["ID", "Name", "Status", "Numbers", "Calls", "Active", "Queued", "Picked", "Retrying", "Failed", "Done"];
const NAME_COLUMN: usize = 1;
const STATUS_COLUMN: usize = 2;
/// Columns left out, in this order, when the terminal is too narrow: Calls, Queued, Active, Numbers.
const DROP_ORDER: [usize; 4] = [4, 6, 5, 3];
/// The name column keeps at least this much, or its longest name up to the maximum, before a
/// number column is dropped.
const NAME_WIDTH_MIN: u16 = 10;
const NAME_WIDTH_WANTED_MAX: u16 = 24;
const COLUMN_SPACING: u16 = 2;
/// `▶ ` in front of the selected row.
const HIGHLIGHT_SYMBOL_WIDTH: u16 = 2;

fn row_cells(r: &CampaignRow) -> [String; COLUMNS] {
    [
        r.id.to_string(),
        r.name.clone(),
        r.status.clone(),
        thousands(r.numbers),
        thousands(r.calls),
        thousands(r.in_flight),
        thousands(r.queued),
        thousands(r.picked),
        thousands(r.retrying),
        thousands(r.failed),
        r.done_percent.map(|p| format!("{p:.1}%")).unwrap_or_else(|| "–".into()),
    ]
}

fn render_help(frame: &mut Frame, area: Rect, model: &Model) {
    let key =
        |k: &str, what: &str| Line::from(vec![Span::styled(format!("  {k:<12}"), Style::new().add_modifier(Modifier::BOLD)), Span::raw(what.to_string())]);
    let lines = vec![
        key("↑ / k", "select the previous campaign"),
        key("↓ / j", "select the next campaign"),
        key("p", "pause the selected campaign"),
        key("r", "resume the selected campaign"),
        key("? / h", "show or hide this help"),
        key("q / Esc", "quit (Esc first closes this help)"),
        Line::from(""),
        Line::from(format!("  polling {} every {}", model.url, humantime::format_duration(model.interval))),
        Line::from("  paused campaigns keep their calls; resume dials them again"),
    ];
    let height = lines.len() as u16 + 2;
    let popup = area.centered(Constraint::Length(64.min(area.width)), Constraint::Length(height.min(area.height)));
    frame.render_widget(Clear, popup);
    frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(" Help — keys ").border_style(Style::new().fg(Color::Cyan))), popup);
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
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
fn clock_of(rfc3339: &str) -> String {
    match rfc3339.get(11..19) {
        Some(time) => format!("{time}Z"),
        None => rfc3339.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::super::client::{Campaign, Page, Snapshot, Update, choose_campaigns};
    use super::*;

    /// Recorded answers of a running service (see tests/fixtures/tui/README.md).
    const METRICS: &str = include_str!("../../../tests/fixtures/tui/metrics.json");
    const METRICS_PROVIDER_DOWN: &str = include_str!("../../../tests/fixtures/tui/metrics_provider_down.json");
    const CAMPAIGN_LIST: &str = include_str!("../../../tests/fixtures/tui/campaigns.json");
    const CAMPAIGNS: [&str; 3] = [
        include_str!("../../../tests/fixtures/tui/campaign_1.json"),
        include_str!("../../../tests/fixtures/tui/campaign_2.json"),
        include_str!("../../../tests/fixtures/tui/campaign_3.json"),
    ];
    const SNAPSHOT_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tui/screen_connected.txt");

    /// A snapshot assembled the way `ApiClient::snapshot` does, from the recorded answers.
    fn recorded_snapshot(metrics: &str) -> Snapshot {
        let list: Page<Campaign> = serde_json::from_str(CAMPAIGN_LIST).expect("list fixture parses");
        let details: Vec<Campaign> = CAMPAIGNS.iter().map(|c| serde_json::from_str(c).expect("campaign fixture parses")).collect();
        let listed = list.results.len();
        let campaigns = choose_campaigns(list.results).iter().map(|c| details.iter().find(|d| d.id == c.id).expect("a detail per campaign").clone()).collect();
        Snapshot {
            metrics: serde_json::from_str(metrics).expect("metrics fixture parses"),
            campaigns,
            campaigns_listed: listed,
            campaigns_truncated: false,
            fetched_at: "23:20:05Z".into(),
        }
    }

    fn connected_model(metrics: &str) -> Model {
        let mut model = Model::new("http://127.0.0.1:8000", Duration::from_secs(1));
        model.apply(Update::Snapshot(Box::new(recorded_snapshot(metrics))));
        model
    }

    /// The screen as text, one string per row.
    fn draw(model: &Model, width: u16, height: u16) -> Vec<String> {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).expect("test terminal");
        terminal.draw(|frame| render(frame, model)).expect("draws");
        let buffer = terminal.backend().buffer();
        (0..height).map(|y| (0..width).map(|x| buffer[(x, y)].symbol()).collect()).collect()
    }

    /// Row and column (in characters) of the first occurrence of `needle`.
    fn find(screen: &[String], needle: &str) -> Option<(usize, usize)> {
        screen.iter().enumerate().find_map(|(row, line)| line.find(needle).map(|byte| (row, line[..byte].chars().count())))
    }

    fn expect_at(screen: &[String], needle: &str) -> (usize, usize) {
        find(screen, needle).unwrap_or_else(|| panic!("`{needle}` not on screen:\n{}", screen.join("\n")))
    }

    #[test]
    fn slot_gauge_and_queue_counts_sit_in_their_panels() {
        let screen = draw(&connected_model(METRICS), 120, 40);
        let (slots_row, slots_col) = expect_at(&screen, " Slots ");
        let (queue_row, queue_col) = expect_at(&screen, " Queue ");
        assert_eq!(slots_row, queue_row, "the two panels share a row");
        let (gauge_row, gauge_col) = expect_at(&screen, "10 / 20 in use (50%)");
        assert_eq!(gauge_row, slots_row + 1, "the gauge is the Slots panel's first line");
        assert!(slots_col < gauge_col && gauge_col < queue_col, "the gauge is inside the Slots panel");
        for text in ["queued 39", "retrying 32", "held by paused 30", "dead letters 0"] {
            let (row, col) = expect_at(&screen, text);
            assert!(row > queue_row && row <= queue_row + 2 && col >= queue_col, "`{text}` is inside the Queue panel");
        }
        let (header_row, _) = expect_at(&screen, "● healthy");
        assert_eq!(header_row, 0);
        expect_at(&screen, "updated 23:20:05Z");
    }

    #[test]
    fn campaign_rows_show_counts_with_the_first_row_selected() {
        let screen = draw(&connected_model(METRICS), 120, 40);
        let (title_row, _) = expect_at(&screen, " Campaigns (3) ");
        let (header_row, _) = expect_at(&screen, "Retrying");
        assert_eq!(header_row, title_row + 1);
        // Running campaigns first: active 1, paused 3, then stopped 2.
        let rows: Vec<usize> = ["Spring renewals", "Survey – NPS", "Winback Q4"].iter().map(|name| expect_at(&screen, name).0).collect();
        assert_eq!(rows, [header_row + 1, header_row + 2, header_row + 3]);
        let spring = &screen[rows[0]];
        assert!(spring.contains("▶"), "the first row is selected: {spring}");
        for cell in ["active", "120", "72", "34", "60.0%"] {
            assert!(spring.contains(cell), "`{cell}` missing from the Spring renewals row: {spring}");
        }
        assert!(screen[rows[1]].contains("paused") && screen[rows[1]].contains("0.0%"), "{}", screen[rows[1]]);
        assert!(screen[rows[2]].contains("stopped") && screen[rows[2]].contains("100.0%"), "{}", screen[rows[2]]);
    }

    #[test]
    fn selection_moves_the_marker() {
        let mut model = connected_model(METRICS);
        model.move_selection(2);
        let screen = draw(&model, 120, 40);
        let (row, _) = expect_at(&screen, "Winback Q4");
        assert!(screen[row].contains("▶"), "{}", screen[row]);
        assert!(!screen[expect_at(&screen, "Spring renewals").0].contains("▶"));
    }

    #[test]
    fn outcome_mix_rates_and_provider_latency() {
        let screen = draw(&connected_model(METRICS), 120, 40);
        let (title_row, title_col) = expect_at(&screen, " Outcomes today (2026-11-21) ");
        let picked = expect_at(&screen, "PICKED");
        assert_eq!(picked, (title_row + 1, title_col + 1), "inside the panel, after its padding");
        // 69 of 101 outcomes.
        assert!(screen[picked.0].contains("69   68%"), "{}", screen[picked.0]);
        for (name, count) in [("DISCONNECTED", "14"), ("RNR", "10"), ("FAILED", "8")] {
            let (row, _) = expect_at(&screen, &format!("{name:<12}"));
            assert!(row > title_row && row <= title_row + 4 && screen[row].contains(count), "{}", screen[row]);
        }
        expect_at(&screen, "Dials/s · 1.78 avg 60s");
        expect_at(&screen, "Completions/s · 2.08 avg 60s");
        let (provider_row, provider_col) = expect_at(&screen, " Provider ");
        assert_eq!(expect_at(&screen, "latency p50 1 ms · p99 13 ms"), (provider_row + 1, provider_col + 1));
        expect_at(&screen, "no recent errors");
    }

    #[test]
    fn provider_errors_and_dead_letters_are_listed() {
        let screen = draw(&connected_model(METRICS_PROVIDER_DOWN), 120, 40);
        expect_at(&screen, "transport errors 9 · refusals 0");
        expect_at(&screen, "dead letters 3");
        let (row, _) = expect_at(&screen, "23:20:13Z call 01a20069-0599-7667-9938-09d6734e331b");
        let (provider_row, _) = expect_at(&screen, " Provider ");
        assert_eq!(row, provider_row + 3, "the newest error comes first");
        assert!(screen[row..row + 2].concat().contains("send 3"), "the newest error is the third send");
        expect_at(&screen, "Connection refused");
    }

    #[test]
    fn never_connected_shows_disconnected_and_retrying() {
        let mut model = Model::new("http://127.0.0.1:8000", Duration::from_secs(1));
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
        expect_at(&screen, "data from 23:20:05Z");
        expect_at(&screen, "10 / 20 in use (50%)");
        expect_at(&screen, "Spring renewals");
        // Reconnecting clears the banner.
        model.apply(Update::Snapshot(Box::new(recorded_snapshot(METRICS))));
        assert_eq!(find(&draw(&model, 120, 40), "disconnected"), None);
    }

    #[test]
    fn help_overlay_lists_the_keys_over_the_dashboard() {
        let mut model = connected_model(METRICS);
        model.show_help = true;
        let screen = draw(&model, 120, 40);
        let (title_row, title_col) = expect_at(&screen, " Help — keys ");
        for key in ["select the next campaign", "pause the selected campaign", "resume the selected campaign", "quit"] {
            let (row, col) = expect_at(&screen, key);
            assert!(row > title_row && col > title_col, "`{key}` is inside the overlay");
        }
        expect_at(&screen, "polling http://127.0.0.1:8000 every 1s");
        assert_eq!(find(&draw(&connected_model(METRICS), 120, 40), "Help — keys"), None);
    }

    #[test]
    fn status_line_shows_action_results() {
        let mut model = connected_model(METRICS);
        model.apply(Update::ActionDone { message: "pause campaign 2 (Winback Q4) failed: HTTP 409 conflict: Campaign is stopped".into(), ok: false });
        let screen = draw(&model, 120, 40);
        let (row, _) = expect_at(&screen, "HTTP 409 conflict: Campaign is stopped");
        assert_eq!(row, 39, "the status line is the last row");
        assert_eq!(find(&screen, "p pause"), None, "the result replaces the key hints");
    }

    #[test]
    fn a_smaller_terminal_still_shows_gauge_and_campaigns() {
        let screen = draw(&connected_model(METRICS), 80, 24);
        expect_at(&screen, "10 / 20 in use (50%)");
        for name in ["Spring renewals", "Survey – NPS", "Winback Q4"] {
            expect_at(&screen, name);
        }
        let (header_row, _) = expect_at(&screen, "Retrying");
        assert_eq!(find(&screen, "Calls"), None, "the least needed column gave way: {}", screen[header_row]);
        let screen = draw(&connected_model(METRICS), 50, 10);
        expect_at(&screen, "terminal too small: 50x10");
    }

    /// The whole 120x40 screen against the committed snapshot. After an intended change of the
    /// layout, regenerate with `CALLMGR_UPDATE_SNAPSHOTS=1 cargo test --lib tui` and review the diff.
    #[test]
    fn connected_screen_matches_snapshot() {
        let screen = draw(&connected_model(METRICS), 120, 40).iter().map(|l| l.trim_end().to_string()).collect::<Vec<_>>().join("\n") + "\n";
        if std::env::var_os("CALLMGR_UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(SNAPSHOT_FILE, &screen).expect("snapshot written");
        }
        let expected = std::fs::read_to_string(SNAPSHOT_FILE).expect("snapshot file exists (CALLMGR_UPDATE_SNAPSHOTS=1 creates it)");
        if screen != expected {
            let first = screen.lines().zip(expected.lines()).position(|(a, b)| a != b).unwrap_or(0);
            panic!("screen differs from {SNAPSHOT_FILE} from row {first}:\n--- got\n{screen}\n--- expected\n{expected}");
        }
    }

    #[test]
    fn numbers_read_easily() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(uptime(42), "42s");
        assert_eq!(uptime(303), "5m 03s");
        assert_eq!(uptime(3_720), "1h 02m");
        assert_eq!(uptime(2 * 86_400 + 3 * 3_600), "2d 03h");
        assert_eq!(clock_of("2026-11-21T23:20:13.075Z"), "23:20:13Z");
    }
}
