"""One report of a survey round a People's Committee can publish: HTML (self-contained) and Excel.

:func:`build_report` writes, in English or Vietnamese:

1. an **executive summary**: the national index with its interval, how many agencies are
   published, the best and worst agencies with their rank intervals, the significant
   changes since last year;
2. the **agency index** (figure grouped by tier, table), the agencies that are not
   published with their reason and number of respondents, the agencies x elements heat
   map, the ranks with their intervals, the change since last year;
3. a **page per agency**: its elements with intervals, its criteria, and the comparison
   with the mean of its tier and the national estimate;
4. a **methods** section: design, response rates, weighting steps with their diagnostics,
   variance method, the suppression rule (stated once), and the questionnaire's status
   ("reconstructed" where it is).

Suppression is a property of the estimate (:func:`satsample.outputs.flags.flag_estimate`): a
suppressed value is not printed, plotted, ranked or counted anywhere in the report or the
workbook.  The HTML file has no script and no external resource: styles are inline and
figures are embedded PNG images, so it renders offline and can be mailed or archived as
it is.  Every text from the data is escaped; in the workbook, text that a spreadsheet
would read as a formula is prefixed with an apostrophe (OWASP).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from .._spreadsheet import protect_worksheet
from .._validation import SatsampleError, check_choice
from .flags import _model_based, _unranked_model_rows, flag_estimate
from .plotting import (
    LANGUAGES,
    TIER_LABELS,
    _check_scale,
    _element_names,
    _num,
)
from .ranking import _level_data

__all__ = ["ReportFiles", "build_report"]

_CSS = """
body{font-family:'DejaVu Sans',system-ui,'Segoe UI',Roboto,Arial,sans-serif;margin:2em auto;
max-width:62em;color:#222;line-height:1.45;padding:0 1em}
h1{border-bottom:3px solid #2c5d8a;padding-bottom:.2em;font-size:1.6em}
h2{color:#2c5d8a;margin-top:2em;border-bottom:1px solid #ccc}
h3{margin-top:1.6em}
table{border-collapse:collapse;margin:.8em 0;font-size:.86em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right;vertical-align:top}
th{background:#eef3f8}
td.text,th.text{text-align:left}
tr.suppress td{color:#666;background:#f2f2f2}
tr.review td{background:#fff4d6}
tr.model td{font-style:italic;color:#7a0177}
tr.tier td{background:#e8eef5;font-weight:600;text-align:left}
figure{margin:1em 0}
figure img{max-width:100%;height:auto}
figcaption{font-size:.85em;color:#555}
.note{font-size:.85em;color:#555}
.summary{background:#f5f8fb;border-left:4px solid #2c5d8a;padding:.6em 1em}
.big{font-size:1.25em;font-weight:600}
dl.kv{display:grid;grid-template-columns:max-content auto;gap:.15em 1em}
dl.kv dt{font-weight:600}
dl.kv dd{margin:0}
section.agency{break-before:page;page-break-before:always}
@media print{body{max-width:none;margin:0}h2{break-before:page}}
"""

_W: dict[str, dict[str, str]] = {
    "en": {
        "title": "Satisfaction with public administrative services: survey report",
        "summary": "Executive summary",
        "national": "National satisfaction index: {est} ({pct} % confidence interval {lo} to "
                    "{hi}), from {n} respondents.",
        "mean_only": "Mean of the published agencies' indices: {est} (no national estimate "
                     "was given).",
        "published": "{pub} of {tot} agencies are published{rev}; {sup} are not published "
                     "(too few respondents or too imprecise, see below).",
        "review_part": ", {n} of them marked for review",
        "best": "Highest indices",
        "worst": "Lowest indices",
        "rank_line": "{rank}. {name}: {est} (rank between {lo} and {hi})",
        "changes": "Significant changes since last year",
        "changes_none": "No agency changed significantly since last year "
                        "({pct} % intervals of the change).",
        "change_line": "{name}: {prev} → {cur} ({sign}{d} points, interval {lo} to {hi})",
        "chance": "Each change is judged by its own {pct} % interval, without adjustment "
                  "for the {m} comparisons: about {e} significant changes are expected by "
                  "chance alone.",
        "index_h": "Satisfaction index by agency",
        "index_cap": "Satisfaction index by agency with {pct} % confidence intervals, grouped "
                     "by tier and sorted; the band is the {ref}. Agencies without a value are "
                     "not published.",
        "ref_national": "national estimate with its interval",
        "ref_mean": "mean of the published agencies",
        "table_cap": "Agencies: index, interval, rank interval and respondents",
        "rank": "Rank", "agency": "Agency", "tier": "Tier", "index": "Index",
        "ci": "{pct} % interval", "rank_int": "Rank interval", "n": "Respondents",
        "status": "Note", "not_pub": "not published", "review": "to review",
        "model": "model-based",
        "model_part": ", {n} of them with a model-based estimate",
        "sa_h": "Model-based estimates for agencies with few respondents",
        "sa_list_h": "Agencies with a model-based estimate",
        "sa_intro": "These agencies have too few respondents for a direct estimate; their index "
                    "is a model-based (Fay-Herriot) estimate, labelled model-based, and is not "
                    "ranked (see Methods):",
        "sa_synthetic": "no respondent: synthetic estimate",
        "sa_agency": " Model-based estimate (Fay-Herriot small-area model), not ranked; see "
                     "Methods.",
        "sa_txt": "The index of an agency with too few respondents is a model-based estimate: "
                  "the empirical best linear unbiased predictor (EBLUP) of the Fay-Herriot "
                  "area-level model y_d = x_d'β + v_d + e_d, with agency effects "
                  "v_d ~ N(0, σ²_v) and sampling errors e_d ~ N(0, ψ_d), fitted to the "
                  "direct indices of the {m} agencies with respondents. Covariates: {covs}. "
                  "σ²_v = {s2}, estimated by {method}{boundary}. Sampling variances ψ_d: "
                  "{psi}. The interval is the estimate ± {z} × its root mean squared error "
                  "(MSE: {mse}). An agency without respondents gets the synthetic estimate "
                  "x_d'β. The elements and criteria of these agencies are not modelled; "
                  "model-based estimates are not ranked. Model: {model}.",
        "sa_boundary": " (at its boundary 0: each estimate is its synthetic part x_d'β)",
        "sa_coef": "Coefficients (SE): {coefs}.",
        "not_pub_h": "Agencies not published",
        "not_pub_intro": "These agencies were surveyed but their estimates are not "
                         "published; each reason is stated once with the agencies it "
                         "applies to.",
        "review_h": "Agencies marked for review",
        "none_sup": "Every agency's index is published.",
        "elements_h": "Elements by agency",
        "elements_cap": "Satisfaction index by agency (rows) and element (columns); "
                        "hatched cells are not published.",
        "ranks_h": "Ranks with their uncertainty",
        "ranks_cap": "Rank of each published agency with its {pct} % rank interval from the "
                     "bootstrap replicates. An agency whose interval is wide cannot be told "
                     "apart from its neighbours.",
        "change_h": "Change since last year",
        "change_cap": "Change of the index since last year with {pct} % intervals; filled "
                      "markers are significant changes. Agencies not published in either "
                      "year are left out.",
        "agencies_h": "Agency pages",
        "element": "Element", "criterion": "Criterion",
        "tier_mean": "Mean of its tier", "national_col": "National",
        "agency_not_pub": "Not published: {reason} (n = {n}).",
        "agency_n": "{n} respondents. Index {est} ({lo} to {hi}); rank {rank} (between {rlo} "
                    "and {rhi}).",
        "agency_n_norank": "{n} respondents. Index {est} ({lo} to {hi}).",
        "methods_h": "Methods",
        "design_h": "Design",
        "design_txt": "{n} sampled units in {strata} strata (agencies) and {psu} primary "
                      "units, of which {r} respondents carry a weight after the last "
                      "weighting step; {df} degrees of freedom.",
        "rr_h": "Response rates",
        "rr_txt": "Response rate by agency: mean of agencies {mean} %, lowest {low} %, "
                  "highest {high} %.",
        "rr_cap": "Response rate by agency, grouped by tier (axis from 0 to 100 %).",
        "weight_h": "Weighting steps and their diagnostics",
        "weight_cap": "Weights after each step: smallest to largest, mean, Kish design "
                      "effect.",
        "step": "Step", "method": "Method", "converged": "Converged",
        "kish": "Kish design effect", "neff": "Effective sample size",
        "wmin": "Smallest weight", "wmax": "Largest weight", "rows_w": "Weighted rows",
        "yes": "yes", "no": "no", "na": "not iterative",
        "var_h": "Variance estimation",
        "var_replicate": "Standard errors from {r} {kind} replicates; every weighting step "
                         "is repeated on every replicate, so the intervals include the "
                         "weighting. Intervals: {ci} at the {pct} % level.",
        "var_taylor": "Standard errors by Taylor linearisation (first-order), intervals: {ci} "
                      "at the {pct} % level.",
        "rule_h": "Suppression rule",
        "rule_txt": "An estimate is not published when {parts}. It is marked for review "
                    "when it has fewer than {df} degrees of freedom. The rules follow the "
                    "NCHS data presentation standards for proportions (Parker et al. 2017).",
        "rule_n": "fewer than {v} people answered",
        "rule_rse": "its relative standard error exceeds {v} %",
        "rule_neff": "its Korn-Graubard effective sample size is below {v}",
        "rule_width": "its confidence interval is wider than {v} points",
        "q_h": "Questionnaire",
        "q_txt": "Questionnaire {name}: {k} criteria in {e} elements. Satisfied = answers "
                 "{codes}; the element index is the mean of its criteria and the overall "
                 "index the mean of the elements.",
        "q_recon": "Status: RECONSTRUCTED. The list of criteria is not confirmed by an "
                   "official text; figures must be read with this caveat.",
        "q_conf": "Status: as published.",
        "alloc_h": "Sample plan",
        "alloc_txt": "{n} units selected in {h} agencies{moe}.",
        "alloc_moe": "; expected national margin of error {m} points",
        "alloc_cap": "Units to select against users in the frame (log scales).",
        "notes_h": "Notes",
        "scale_note": "Indices are shown on a 0-{top} scale, rounded to {d} decimal(s).",
        "reason_n": "too few respondents (fewer than {v})",
        "reason_rse": "relative standard error above {v} %",
        "reason_neff": "effective sample size below {v}",
        "reason_width": "confidence interval wider than {v} points",
        "reason_df": "fewer than {v} degrees of freedom",
        "reason_empty": "no usable answer",
        "sheet_summary": "Summary", "sheet_agencies": "Agencies",
        "sheet_elements": "Elements", "sheet_items": "Criteria",
        "sheet_notpub": "Not published", "sheet_change": "Change",
        "sheet_weight": "Weighting", "sheet_rr": "Response rates", "sheet_alloc": "Sample plan",
        "item": "Item", "value": "Value", "reason": "Reason",
        "last_year": "Last year", "this_year": "This year", "change": "Change",
        "significant": "Significant", "rate": "Response rate (%)",
        "selected": "Units to select", "frame": "Users in the frame",
        "exp_resp": "Expected respondents", "exp_moe": "Expected margin of error (points)",
        "code": "Code", "overall": "Overall",
    },
    "vi": {
        "title": "Báo cáo khảo sát mức độ hài lòng đối với dịch vụ hành chính công",
        "summary": "Tóm tắt",
        "national": "Chỉ số hài lòng chung: {est} (khoảng tin cậy {pct} % từ {lo} đến "
                    "{hi}), từ {n} người trả lời.",
        "mean_only": "Trung bình chỉ số của các cơ quan được công bố: {est} (không có ước "
                     "lượng chung).",
        "published": "{pub} trên {tot} cơ quan được công bố{rev}; {sup} cơ quan không công "
                     "bố (quá ít người trả lời hoặc kém chính xác, xem bên dưới).",
        "review_part": ", trong đó {n} cơ quan cần xem xét",
        "best": "Chỉ số cao nhất",
        "worst": "Chỉ số thấp nhất",
        "rank_line": "{rank}. {name}: {est} (thứ hạng từ {lo} đến {hi})",
        "changes": "Thay đổi có ý nghĩa thống kê so với năm trước",
        "changes_none": "Không cơ quan nào thay đổi có ý nghĩa so với năm trước "
                        "(khoảng {pct} % của mức thay đổi).",
        "change_line": "{name}: {prev} → {cur} ({sign}{d} điểm, khoảng {lo} đến {hi})",
        "chance": "Mỗi thay đổi được đánh giá bằng khoảng tin cậy {pct} % riêng, không hiệu "
                  "chỉnh cho {m} phép so sánh: khoảng {e} thay đổi có ý nghĩa có thể xuất "
                  "hiện chỉ do ngẫu nhiên.",
        "index_h": "Chỉ số hài lòng theo cơ quan",
        "index_cap": "Chỉ số hài lòng theo cơ quan với khoảng tin cậy {pct} %, theo cấp và "
                     "sắp xếp; dải màu là {ref}. Cơ quan không có giá trị là cơ quan không "
                     "công bố.",
        "ref_national": "ước lượng chung và khoảng tin cậy của nó",
        "ref_mean": "trung bình các cơ quan được công bố",
        "table_cap": "Các cơ quan: chỉ số, khoảng tin cậy, khoảng thứ hạng và số người trả lời",
        "rank": "Hạng", "agency": "Cơ quan", "tier": "Cấp", "index": "Chỉ số",
        "ci": "Khoảng tin cậy {pct} %", "rank_int": "Khoảng thứ hạng", "n": "Số người trả lời",
        "status": "Ghi chú", "not_pub": "không công bố", "review": "cần xem xét",
        "model": "theo mô hình",
        "model_part": ", trong đó {n} cơ quan có ước lượng theo mô hình",
        "sa_h": "Ước lượng theo mô hình cho các cơ quan có ít người trả lời",
        "sa_list_h": "Cơ quan có ước lượng theo mô hình",
        "sa_intro": "Các cơ quan này có quá ít người trả lời để ước lượng trực tiếp; chỉ số "
                    "của họ là ước lượng theo mô hình (Fay-Herriot), được ghi rõ là theo mô "
                    "hình và không được xếp hạng (xem phần Phương pháp):",
        "sa_synthetic": "không có người trả lời: ước lượng tổng hợp",
        "sa_agency": " Ước lượng theo mô hình (mô hình ước lượng khu vực nhỏ Fay-Herriot), "
                     "không xếp hạng; xem phần Phương pháp.",
        "sa_txt": "Chỉ số của cơ quan có quá ít người trả lời là ước lượng theo mô hình: dự "
                  "báo tuyến tính không chệch tốt nhất thực nghiệm (EBLUP) của mô hình cấp "
                  "khu vực Fay-Herriot y_d = x_d'β + v_d + e_d, với hiệu ứng cơ quan "
                  "v_d ~ N(0, σ²_v) và sai số chọn mẫu e_d ~ N(0, ψ_d), ước lượng từ chỉ số "
                  "trực tiếp của {m} cơ quan có người trả lời. Biến phụ trợ: {covs}. "
                  "σ²_v = {s2}, ước lượng bằng {method}{boundary}. Phương sai chọn mẫu ψ_d: "
                  "{psi}. Khoảng tin cậy là ước lượng ± {z} × căn bậc hai của sai số bình "
                  "phương trung bình (MSE: {mse}). Cơ quan không có người trả lời nhận ước "
                  "lượng tổng hợp x_d'β. Các yếu tố và tiêu chí của các cơ quan này không "
                  "được mô hình hóa; ước lượng theo mô hình không được xếp hạng. "
                  "Mô hình: {model}.",
        "sa_boundary": " (tại biên 0: mỗi ước lượng bằng phần tổng hợp x_d'β)",
        "sa_coef": "Hệ số (sai số chuẩn): {coefs}.",
        "not_pub_h": "Cơ quan không công bố",
        "not_pub_intro": "Các cơ quan này đã được khảo sát nhưng kết quả không được công bố; "
                         "mỗi lý do được nêu một lần cùng các cơ quan liên quan.",
        "review_h": "Cơ quan cần xem xét",
        "none_sup": "Chỉ số của mọi cơ quan đều được công bố.",
        "elements_h": "Các yếu tố theo cơ quan",
        "elements_cap": "Chỉ số hài lòng theo cơ quan (hàng) và yếu tố (cột); ô gạch chéo "
                        "là không công bố.",
        "ranks_h": "Thứ hạng và độ bất định",
        "ranks_cap": "Thứ hạng của mỗi cơ quan được công bố với khoảng thứ hạng {pct} % từ "
                     "các mẫu lặp bootstrap. Cơ quan có khoảng rộng không thể phân biệt với "
                     "các cơ quan lân cận.",
        "change_h": "Thay đổi so với năm trước",
        "change_cap": "Thay đổi chỉ số so với năm trước với khoảng tin cậy {pct} %; điểm tô "
                      "đậm là thay đổi có ý nghĩa. Cơ quan không công bố ở một trong hai năm "
                      "được bỏ qua.",
        "agencies_h": "Trang của từng cơ quan",
        "element": "Yếu tố", "criterion": "Tiêu chí",
        "tier_mean": "Trung bình cùng cấp", "national_col": "Chung",
        "agency_not_pub": "Không công bố: {reason} (n = {n}).",
        "agency_n": "{n} người trả lời. Chỉ số {est} ({lo} đến {hi}); hạng {rank} (từ {rlo} "
                    "đến {rhi}).",
        "agency_n_norank": "{n} người trả lời. Chỉ số {est} ({lo} đến {hi}).",
        "methods_h": "Phương pháp",
        "design_h": "Thiết kế mẫu",
        "design_txt": "{n} đơn vị mẫu trong {strata} tầng (cơ quan) và {psu} đơn vị mẫu "
                      "cấp một, trong đó {r} người trả lời có trọng số sau bước gia trọng "
                      "cuối; {df} bậc tự do.",
        "rr_h": "Tỷ lệ trả lời",
        "rr_txt": "Tỷ lệ trả lời theo cơ quan: trung bình {mean} %, thấp nhất {low} %, "
                  "cao nhất {high} %.",
        "rr_cap": "Tỷ lệ trả lời theo cơ quan, theo cấp (trục từ 0 đến 100 %).",
        "weight_h": "Các bước gia trọng và chẩn đoán",
        "weight_cap": "Trọng số sau mỗi bước: nhỏ nhất đến lớn nhất, trung bình, deff Kish.",
        "step": "Bước", "method": "Phương pháp", "converged": "Hội tụ",
        "kish": "Hệ số thiết kế Kish", "neff": "Cỡ mẫu hiệu dụng",
        "wmin": "Trọng số nhỏ nhất", "wmax": "Trọng số lớn nhất", "rows_w": "Số dòng có trọng số",
        "yes": "có", "no": "không", "na": "không lặp",
        "var_h": "Ước lượng phương sai",
        "var_replicate": "Sai số chuẩn từ {r} mẫu lặp {kind}; mọi bước gia trọng được lặp lại "
                         "trên từng mẫu lặp nên khoảng tin cậy đã tính đến gia trọng. Khoảng "
                         "tin cậy: {ci} ở mức {pct} %.",
        "var_taylor": "Sai số chuẩn theo tuyến tính hóa Taylor; khoảng tin cậy: {ci} ở mức "
                      "{pct} %.",
        "rule_h": "Quy tắc không công bố",
        "rule_txt": "Một ước lượng không được công bố khi {parts}. Ước lượng cần xem xét khi "
                    "có ít hơn {df} bậc tự do. Quy tắc theo chuẩn trình bày số liệu tỷ lệ "
                    "của NCHS (Parker và cộng sự, 2017).",
        "rule_n": "có ít hơn {v} người trả lời",
        "rule_rse": "sai số chuẩn tương đối vượt {v} %",
        "rule_neff": "cỡ mẫu hiệu dụng Korn-Graubard dưới {v}",
        "rule_width": "khoảng tin cậy rộng hơn {v} điểm",
        "q_h": "Bảng hỏi",
        "q_txt": "Bảng hỏi {name}: {k} tiêu chí trong {e} yếu tố. Hài lòng = các mức trả lời "
                 "{codes}; chỉ số yếu tố là trung bình các tiêu chí, chỉ số chung là trung "
                 "bình các yếu tố.",
        "q_recon": "Tình trạng: TÁI DỰNG. Danh sách tiêu chí chưa được đối chiếu với văn bản "
                   "chính thức; cần đọc kết quả với lưu ý này.",
        "q_conf": "Tình trạng: theo văn bản đã công bố.",
        "alloc_h": "Kế hoạch chọn mẫu",
        "alloc_txt": "{n} đơn vị được chọn trong {h} cơ quan{moe}.",
        "alloc_moe": "; sai số biên chung dự kiến {m} điểm",
        "alloc_cap": "Số đơn vị cần chọn so với số người dùng trong khung (thang log).",
        "notes_h": "Ghi chú",
        "scale_note": "Chỉ số theo thang 0-{top}, làm tròn {d} chữ số thập phân.",
        "reason_n": "quá ít người trả lời (dưới {v})",
        "reason_rse": "sai số chuẩn tương đối trên {v} %",
        "reason_neff": "cỡ mẫu hiệu dụng dưới {v}",
        "reason_width": "khoảng tin cậy rộng hơn {v} điểm",
        "reason_df": "ít hơn {v} bậc tự do",
        "reason_empty": "không có câu trả lời sử dụng được",
        "sheet_summary": "Tóm tắt", "sheet_agencies": "Cơ quan",
        "sheet_elements": "Yếu tố", "sheet_items": "Tiêu chí",
        "sheet_notpub": "Không công bố", "sheet_change": "Thay đổi",
        "sheet_weight": "Gia trọng", "sheet_rr": "Tỷ lệ trả lời", "sheet_alloc": "Kế hoạch mẫu",
        "item": "Mục", "value": "Giá trị", "reason": "Lý do",
        "last_year": "Năm trước", "this_year": "Năm nay", "change": "Thay đổi",
        "significant": "Có ý nghĩa", "rate": "Tỷ lệ trả lời (%)",
        "selected": "Số đơn vị cần chọn", "frame": "Số người dùng trong khung",
        "exp_resp": "Số người trả lời dự kiến", "exp_moe": "Sai số biên dự kiến (điểm)",
        "code": "Mã", "overall": "Chung",
    },
}


_KIND_WORDS = {
    "en": {"subbootstrap": "Rao-Wu bootstrap", "bootstrap": "bootstrap",
           "JK1": "jackknife (JK1)", "JKn": "stratified jackknife (JKn)",
           "BRR": "balanced repeated replication", "Fay": "Fay's balanced repeated replication"},
    "vi": {"subbootstrap": "bootstrap Rao-Wu", "bootstrap": "bootstrap",
           "JK1": "jackknife (JK1)", "JKn": "jackknife phân tầng (JKn)",
           "BRR": "lặp lại cân bằng (BRR)", "Fay": "lặp lại cân bằng Fay"},
}
_CI_WORDS = {
    "en": {"mean": "Student t intervals", "logit": "logit intervals",
           "xlogit": "logit intervals (svyciprop)", "likelihood": "likelihood intervals",
           "asin": "arcsine intervals", "beta": "Korn-Graubard (beta) intervals",
           "wilson": "Wilson intervals"},
    "vi": {"mean": "khoảng Student t", "logit": "khoảng logit",
           "xlogit": "khoảng logit (svyciprop)", "likelihood": "khoảng hợp lý",
           "asin": "khoảng arcsin", "beta": "khoảng Korn-Graubard (beta)",
           "wilson": "khoảng Wilson"},
}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ReportFiles:
    """The files written by :func:`build_report` (None for a format not asked for).

    Attributes
    ----------
    html, excel, pdf : pathlib.Path or None
    notes : tuple of str
        Problems met while building (a figure that could not be drawn...); also listed at
        the end of the HTML report.
    """

    html: Path | None = None
    excel: Path | None = None
    pdf: Path | None = None
    notes: tuple[str, ...] = ()


def _e(value: Any) -> str:
    """Escape any value for HTML text."""
    return html.escape("" if value is None else str(value), quote=True)


def _int(x: Any, language: str) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)) or pd.isna(x):
        return "–"
    text = f"{int(round(float(x))):,}"
    return text.replace(",", ".") if language == "vi" else text


def _check_writable(path: Path, what: str) -> None:
    parent = path.parent
    if not parent.exists():
        raise SatsampleError(f"{what} {str(path)!r} cannot be written: folder "
                             f"{str(parent)!r} does not exist")
    if path.exists() and path.is_dir():
        raise SatsampleError(f"{what} {str(path)!r} cannot be written: it is a folder")


def _table(header: list[str], rows: list[list[Any]], *, classes: list[str] | None = None,
           text_cols: set[int] | frozenset[int] = frozenset({0}),
           caption: str | None = None) -> str:
    """An HTML table whose every header and cell goes through html.escape."""
    out = ["<table>"]
    if caption:
        out.append(f"<caption>{_e(caption)}</caption>")
    text_cls = ' class="text"'
    out.append("<thead><tr>" + "".join(
        f"<th{text_cls if i in text_cols else ''}>{_e(h)}</th>"
        for i, h in enumerate(header)) + "</tr></thead><tbody>")
    for k, row in enumerate(rows):
        cls = classes[k] if classes else ""
        if cls == "tier":
            out.append(f'<tr class="tier"><td colspan="{len(header)}">{_e(row[0])}</td></tr>')
            continue
        cells = "".join(f"<td{text_cls if i in text_cols else ''}>{_e(v)}</td>"
                        for i, v in enumerate(row))
        row_cls = f' class="{_e(cls)}"' if cls else ""
        out.append(f"<tr{row_cls}>{cells}</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _figure(draw: Callable[[], Any], *, caption: str, notes: list[str],
            pdf: Any = None) -> str:
    """Draw a figure (Axes or Figure returned), embed it as a base64 PNG at its own size.

    With ``pdf`` (a PdfPages), the figure is also a page of the PDF, its caption on top.
    """
    try:
        obj = draw()
    except SatsampleError as exc:
        notes.append(f"{caption}: {exc}")
        return ""
    fig = obj if hasattr(obj, "savefig") else obj.figure
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=150)
        if pdf is not None:
            _pdf_page(pdf, buf.getvalue(), caption)
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    width = round(fig.get_figwidth() * 96)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return (f'<figure><img alt="{_e(caption)}" width="{width}" '
            f'src="data:image/png;base64,{data}"/>'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _pdf_page(pdf: Any, png: bytes, caption: str) -> None:
    """A4 page(s) of the PDF: the caption, then the figure (its 150 dpi image) at its size.

    A figure taller than the page (the ranks of 100 agencies) continues on the next pages,
    cut at the whitest pixel row near each page end, so no text is cut or shrunk.
    """
    import textwrap

    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    from .plotting import A4_PORTRAIT

    W, H = A4_PORTRAIT
    img = mpimg.imread(io.BytesIO(png), format="png")
    h_px, w_px = img.shape[:2]
    scale = min((W - 0.6) / (w_px / 150), 1.0)
    size = 8.5
    text = textwrap.fill(caption, int((W - 1.0) * 72 / (0.55 * size)))
    band = ((text.count("\n") + 1) * size * 1.4 + 10) / 72  # inches
    ink = 1.0 - img[..., :3].mean(axis=2) if img.ndim == 3 else 1.0 - img
    busy = (ink > 0.1).mean(axis=1)
    start = 0
    first = True
    while start < h_px:
        avail_in = H - 0.7 - (band if first else 0.0)
        stop = min(h_px, start + int(avail_in * 150 / scale))
        if stop < h_px:  # cut at the whitest row of the last 8 % of the page
            lo = max(start + 1, stop - int(0.08 * (stop - start)))
            stop = lo + int(np.argmin(busy[lo:stop]))
        part = img[start:stop]
        page = plt.figure(figsize=A4_PORTRAIT)
        top = 1 - 0.4 / H
        if first:
            page.text(0.5 / W, top, text, fontsize=size, va="top", ha="left", color="0.2")
            top -= band / H
        w_in, h_in = scale * w_px / 150, scale * part.shape[0] / 150
        ax = page.add_axes((0.3 / W, top - h_in / H, w_in / W, h_in / H))
        ax.imshow(part, interpolation="lanczos", aspect="auto")
        ax.set_axis_off()
        pdf.savefig(page, dpi=150)
        plt.close(page)
        start = stop
        first = False


def _mapping(values: Any, what: str) -> dict[str, str] | None:
    if values is None:
        return None
    if isinstance(values, (pd.Series, Mapping)):
        return {str(k): str(v) for k, v in values.items()}
    raise SatsampleError(f"{what} must be a mapping or Series from agency to text, got "
                         f"{type(values).__name__}")


def _reason_groups(rows: pd.DataFrame, rule: Mapping[str, Any], language: str
                   ) -> list[tuple[str, list[int]]]:
    """Reasons in words (each once) with the positions of the rows they apply to."""
    w = _W[language]
    groups: dict[str, list[int]] = {}
    for i, (_, r) in enumerate(rows.iterrows()):
        text = str(r.get("reason", "") or "")
        found = []
        if "no estimate" in text:
            found.append(w["reason_empty"])
        if "too few respondents" in text:
            found.append(w["reason_n"].format(v=rule.get("min_n")))
        if "relative SE" in text:
            found.append(w["reason_rse"].format(v=_num(100 * float(rule.get("max_rse") or 0),
                                                      0, language)))
        if "effective n" in text:
            found.append(w["reason_neff"].format(v=_num(float(rule.get("min_effective_n")
                                                              or 0), 0, language)))
        if "interval too wide" in text:
            found.append(w["reason_width"].format(
                v=_num(100 * float(rule.get("max_ci_width") or 0), 0, language)))
        if "degrees of freedom" in text and r.get("status") == "review":
            found.append(w["reason_df"].format(v=_num(float(rule.get("min_df") or 0), 0,
                                                      language)))
        if not found:
            found.append(text or "–")
        groups.setdefault("; ".join(found), []).append(i)
    return list(groups.items())


def _reason_words(row: pd.Series, rule: Mapping[str, Any], language: str) -> str:
    (text, _), = _reason_groups(pd.DataFrame([row]), rule, language)
    return text


def _overall_table(estimate: Any) -> pd.DataFrame:
    tab, _ = _level_data(estimate, "overall")
    return tab


def build_report(
    estimate: Any,
    *,
    national: Any = None,
    league: Any = None,
    previous: Any = None,
    design: Any = None,
    allocation: Any = None,
    response_rates: pd.DataFrame | None = None,
    flags: Mapping[str, Any] | None = None,
    names: Mapping[str, str] | pd.Series | None = None,
    tier: Mapping[str, str] | pd.Series | None = None,
    language: Literal["en", "vi"] = "en",
    scale: float = 100.0,
    decimals: int = 1,
    title: str | None = None,
    html_path: str | Path | None = None,
    excel_path: str | Path | None = None,
    pdf_path: str | Path | None = None,
    small_area: Any = None,
) -> ReportFiles:
    """Write the report of a survey round: one self-contained HTML file and an Excel workbook.

    Parameters
    ----------
    estimate : IndexEstimate
        The index by agency (``by=`` the agency column), from a replicate design for rank
        intervals.  Flagged with :func:`satsample.outputs.flags.flag_estimate` (options ``flags``)
        unless its tables already carry a ``status`` column; suppressed values appear
        nowhere.
    national : IndexEstimate or None, default=None
        The national (pooled) estimate, without ``by``: the summary's headline and the
        reference band of the figures ("national estimate 80.8 (80.4-81.2)").  When None,
        the reference is the mean of the published agencies, named so.
    league : LeagueTable or None, default=None
        The league table (:func:`satsample.outputs.ranking.league_table`).  None: computed from the
        flagged estimate (with rank intervals when it has replicate estimates).  A league
        table that ranks a suppressed agency is recomputed from the flagged estimate with
        the same options.
    previous : IndexEstimate, Change or None, default=None
        Last year's index by agency (or a ready :class:`~satsample.outputs.change.Change`): the
        change since last year with its interval, significant changes marked.  Agencies
        not published in either year are left out.
    design : SurveyDesign or None, default=None
        The final weighted design: design summary, weighting steps with their diagnostics.
    allocation : Allocation or None, default=None
        The sample plan.
    response_rates : pandas.DataFrame or None, default=None
        Columns ``agency``, ``rate`` (share in [0, 1]) and optionally ``tier``, ``name``
        (see :func:`satsample.outputs.plotting.plot_response_rates`).
    flags : mapping or None, default=None
        Options of :func:`satsample.outputs.flags.flag_estimate` (its defaults when None: fewer than
        30 respondents, RSE above 30 %, Korn-Graubard effective n below 30 suppress; fewer
        than 8 degrees of freedom marks for review).
    names : mapping or Series or None, default=None
        Display name of each agency (keyed by the ``by`` label); the labels when None.
    tier : mapping or Series or None, default=None
        Tier of each agency (``"province"``, ``"district"``, ``"commune"`` or any text):
        figures and tables are grouped by it and each agency is compared with its tier.
    language : {"en", "vi"}, default="en"
        Language of every label, heading and sentence (Vietnamese numbers use a decimal
        comma); element names in Vietnamese come from the questionnaire's ``label_vi``.
    scale : float, default=100
        Scale of indices and intervals (100 = 0-100, as published).
    decimals : int, default=1
        Decimals of the indices shown.
    title : str or None, default=None
        Title; a standard title in the report's language when None.
    html_path, excel_path, pdf_path : str, Path or None, default=None
        Files to write (at least one).  The workbook needs openpyxl.  The PDF (matplotlib's
        PDF backend, fonts embedded) has the executive summary, every figure on its own
        page with its caption, and the methods; the tables and agency pages are in the HTML
        and the workbook.
    small_area : FayHerriotEstimate or None, default=None
        The Fay-Herriot fit behind the rows of ``estimate.overall`` whose ``source`` is
        ``"model-based"`` (:func:`satsample.sae.small_area_estimates`, as ``satsample
        run`` does with ``[small_area]``): the methods section states the model, its
        covariates, :math:`\\hat\\sigma^2_v`, the method and the sampling variances.  Those
        rows are labelled "model-based" in the table, the figure, the agency page and the
        workbook, listed with their ``n``, and not ranked.

    Returns
    -------
    ReportFiles
        The paths written and the notes met.

    Raises
    ------
    SatsampleError
        No output path, an unwritable path (the message names it), a bad option, or
        openpyxl missing for the workbook.

    Notes
    -----
    The HTML has no script and no external reference (inline CSS; figures embedded as
    ``data:image/png;base64`` images drawn with matplotlib's Agg renderer at 150 dpi and
    shown at their own size, so text is at least 7 pt as drawn).  All text from the data is
    passed through :func:`html.escape`.  Each agency page starts a new page when printed.

    Examples
    --------
    >>> import satsample as ss
    >>> pop = ss.make_population(n_users=4000, n_agencies=8, rng=1)
    >>> sel = ss.select(pop.frame, ids="user_id", strata="agency_id", n=70, rng=2)
    >>> d = ss.survey_design(ss.simulate_responses(pop, sel.sample, rng=3),
    ...                      strata="agency_id", weights="design_weight", fpc="fpc")
    >>> d = ss.adjust_nonresponse(ss.bootstrap(d, n_replicates=50, rng=4), "responded",
    ...                           classes="agency_id")
    >>> est = ss.satisfaction_index(d, pop.questionnaire, by="agency_id")
    >>> ag = pop.agencies.set_index("agency_id")
    >>> files = ss.build_report(est, national=ss.satisfaction_index(d, pop.questionnaire),
    ...                         design=d, names=ag["name"], tier=ag["level"],
    ...                         html_path="report.html")  # doctest: +SKIP
    """
    check_choice(language, name="language", allowed=LANGUAGES)
    scale = _check_scale(scale)
    paths = _report_paths(html_path=html_path, excel_path=excel_path, pdf_path=pdf_path)
    w = _W[language]
    ctx = _report_context(estimate, national=national, league=league, previous=previous,
                          flags=flags, names=names, tier=tier, language=language, scale=scale,
                          decimals=decimals, small_area=small_area)
    sections = _report_sections(ctx, national=national, design=design, allocation=allocation,
                                response_rates=response_rates, title=title,
                                pdf_path=paths["pdf"])
    if ctx.notes:
        sections.append(f"<h2>{_e(w['notes_h'])}</h2><ul>"
                        + "".join(f"<li>{_e(n)}</li>" for n in ctx.notes) + "</ul>")
    if paths["html"] is not None:
        _write_html(paths["html"], sections, language=language, title=title or w["title"])
    if paths["excel"] is not None:
        _write_excel(paths["excel"], _sheets(ctx, design, allocation, response_rates))
    return ReportFiles(html=paths["html"], excel=paths["excel"], pdf=paths["pdf"],
                       notes=tuple(ctx.notes))


# --------------------------------------------------------------------------- report steps
def _report_paths(*, html_path: str | Path | None, excel_path: str | Path | None,
                  pdf_path: str | Path | None) -> dict[str, Path | None]:
    """Check the output paths (at least one, each writable; openpyxl for the workbook)."""
    if html_path is None and excel_path is None and pdf_path is None:
        raise SatsampleError("build_report needs html_path=, excel_path= and/or pdf_path=")
    paths: dict[str, Path | None] = {}
    for key, p, what in (("html", html_path, "html_path"), ("excel", excel_path, "excel_path"),
                         ("pdf", pdf_path, "pdf_path")):
        paths[key] = None if p is None else Path(p)
        if paths[key] is not None:
            _check_writable(paths[key], what)  # type: ignore[arg-type]
    if paths["excel"] is not None:
        try:
            import openpyxl  # noqa: F401
        except ImportError as exc:  # pragma: no cover - openpyxl is a test dependency
            raise SatsampleError("excel_path needs the openpyxl package (pip install "
                                 "openpyxl)") from exc
    return paths


def _report_context(estimate: Any, *, national: Any, league: Any, previous: Any,
                    flags: Mapping[str, Any] | None, names: Any, tier: Any, language: str,
                    scale: float, decimals: int, small_area: Any) -> _Context:
    """Flag the estimate; gather the national row, league table and change of the report."""
    flagged = flag_estimate(estimate, **dict(flags or {}))
    rule = dict(flagged.options.get("publication_rule", {}) or {})
    names_m = _mapping(names, "names")
    tier_m = _mapping(tier, "tier")
    pct = round(100 * float(flagged.options.get("level", 0.95) or 0.95))
    notes: list[str] = []
    ctx = _Context(flagged=flagged, names=names_m, tier=tier_m, language=language,
                   scale=scale, decimals=decimals, rule=rule, pct=pct, notes=notes,
                   small_area=small_area)
    ctx.national = _national_row(national)
    ctx.league = _league(flagged, league, national, notes)
    ctx.change, ctx.prev_suppressed = _change(flagged, previous, notes)
    if national is not None and hasattr(national, "elements"):
        ne = national.to_frame("element") if hasattr(national, "to_frame") else None
        if ne is not None and len(ne):
            ctx.national_elements = ne.set_index(ne["element"].astype(str))["estimate"]
    return ctx


def _report_sections(ctx: _Context, *, national: Any, design: Any, allocation: Any,
                     response_rates: pd.DataFrame | None, title: str | None,
                     pdf_path: Path | None) -> list[str]:
    """The HTML sections in order; with a PDF path, its pages are written alongside."""
    import contextlib

    w = _W[ctx.language]
    with contextlib.ExitStack() as stack:
        if pdf_path is not None:
            import matplotlib
            from matplotlib.backends.backend_pdf import PdfPages

            stack.enter_context(matplotlib.rc_context({"pdf.fonttype": 42}))
            try:
                ctx.pdf = stack.enter_context(PdfPages(pdf_path, metadata={
                    "Title": title or w["title"], "Creator": "satsample"}))
            except OSError as exc:
                raise SatsampleError(f"pdf_path {str(pdf_path)!r} cannot be written: "
                                     f"{exc}") from exc
        summary = _summary_html(ctx)
        if ctx.pdf is not None:
            _text_pages(ctx.pdf, title or w["title"],
                        [("h3", w["summary"]), *ctx.text["summary"]])
        sections = [
            f"<h1>{_e(title or w['title'])}</h1>",
            summary,
            _index_html(ctx, national),
            _elements_html(ctx),
            _ranks_html(ctx),
            _change_html(ctx),
            _agencies_html(ctx),
            _methods_html(ctx, design, allocation, response_rates),
        ]
        if ctx.pdf is not None:
            _text_pages(ctx.pdf, w["methods_h"], ctx.text["methods"])
    return sections


def _write_html(path: Path, sections: list[str], *, language: str, title: str) -> None:
    """Write the self-contained HTML document (inline CSS, no script)."""
    doc = (f'<!DOCTYPE html>\n<html lang="{language}"><head><meta charset="utf-8"/>'
           '<meta name="viewport" content="width=device-width, initial-scale=1"/>'
           f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
           "<body>" + "\n".join(s for s in sections if s) + "</body></html>\n")
    try:
        path.write_text(doc, encoding="utf-8")
    except OSError as exc:
        raise SatsampleError(f"html_path {str(path)!r} cannot be written: {exc}") from exc


# --------------------------------------------------------------------------- context
@dataclasses.dataclass
class _Context:
    flagged: Any
    names: dict[str, str] | None
    tier: dict[str, str] | None
    language: str
    scale: float
    decimals: int
    rule: dict[str, Any]
    pct: int
    notes: list[str]
    national: pd.Series | None = None
    league: Any = None
    change: Any = None
    prev_suppressed: set[str] = dataclasses.field(default_factory=set)
    national_elements: pd.Series | None = None
    pdf: Any = None
    small_area: Any = None
    text: dict[str, list[tuple[str, str]]] = dataclasses.field(default_factory=dict)
    _rows: pd.DataFrame | None = None

    def num(self, x: Any, decimals: int | None = None) -> str:
        if x is None or pd.isna(x):
            return "–"
        return _num(self.scale * float(x), self.decimals if decimals is None else decimals,
                    self.language)

    def name(self, dom: Any) -> str:
        d = str(dom)
        return self.names.get(d, d) if self.names else d

    def tier_of(self, dom: Any) -> str:
        return self.tier.get(str(dom), "") if self.tier else ""

    def tier_label(self, t: str) -> str:
        return TIER_LABELS[self.language].get(t, t)

    @property
    def rows(self) -> pd.DataFrame:
        """Agencies in report order (tier, published by index, then not published)."""
        if self._rows is None:
            tab = _overall_table(self.flagged)
            tab["domain"] = tab["domain"].astype(str)
            tab["name"] = tab["domain"].map(self.name)
            tab["tier"] = tab["domain"].map(self.tier_of)
            order = {t: i for i, t in enumerate(("province", "district", "commune"))}
            tab["_t"] = tab["tier"].map(lambda t: order.get(t, 3))
            tab["_s"] = (tab["status"] == "suppress").astype(int)
            tab["_k"] = -tab["estimate"].where(tab["_s"] == 0).fillna(-np.inf)
            if self.league is not None:
                lt = self.league.to_frame().set_index("domain")
                for c in ("rank", "rank_low", "rank_high"):
                    tab[c] = tab["domain"].map(lt[c]) if c in lt.columns else np.nan
            else:
                for c in ("rank", "rank_low", "rank_high"):
                    tab[c] = np.nan
            self._rows = tab.sort_values(["_t", "_s", "_k", "name"], kind="stable").drop(
                columns=["_t", "_s", "_k"]).reset_index(drop=True)
        return self._rows


def _national_row(national: Any) -> pd.Series | None:
    if national is None:
        return None
    tab = national.to_frame() if hasattr(national, "to_frame") and not isinstance(
        national, pd.DataFrame) else national
    if isinstance(tab, pd.Series):
        return tab
    if not isinstance(tab, pd.DataFrame) or len(tab) != 1 or "estimate" not in tab.columns:
        raise SatsampleError("national must be the estimate without by= (one row), e.g. "
                             "satisfaction_index(design, questionnaire)")
    return tab.iloc[0]


def _league(flagged: Any, league: Any, national: Any, notes: list[str]) -> Any:
    from .ranking import league_table

    flagged = _unranked_model_rows(flagged)
    sup = set(_overall_table(flagged).query("status == 'suppress'")["domain"].astype(str))
    if league is not None:
        ranked = set(league.to_frame()["domain"].astype(str))
        if not ranked & sup:
            return league
        o = dict(league.options)
        kw = {k: o[k] for k in ("descending", "top_k", "bottom_k", "level", "ties", "adjust")
              if k in o}
        ref: Any = "mean_of_domains"
        if o.get("reference") == "pooled" and national is not None:
            ref = national
        elif o.get("reference") == "fixed":
            ref = float(league.to_frame()["reference"].iloc[0])
        return league_table(flagged, reference=ref,
                            rank_intervals=bool(o.get("rank_intervals", True)), **kw)
    has_reps = getattr(flagged, "replicate_estimates", None) is not None
    try:
        return league_table(flagged, rank_intervals=has_reps)
    except SatsampleError as exc:
        notes.append(f"league table: {exc}")
        return None


def _change(flagged: Any, previous: Any, notes: list[str]) -> tuple[Any, set[str]]:
    """The change since last year and the agencies not published last year."""
    if previous is None:
        return None, set()
    from .change import Change, change

    if isinstance(previous, Change):
        return previous, set()
    prev = flag_estimate(previous)
    t = _overall_table(prev)
    prev_sup = set(t.loc[t["status"] == "suppress", "domain"].astype(str))
    try:
        return change(prev, flagged), prev_sup
    except SatsampleError as exc:
        notes.append(f"change since last year: {exc}")
        return None, prev_sup


def _change_shown(ctx: _Context) -> pd.DataFrame:
    """Rows of the change that may be shown: published this year and last year."""
    if ctx.change is None:
        return pd.DataFrame()
    tab = ctx.change.to_frame()
    tab["domain"] = tab["domain"].astype(str)
    rows = ctx.rows
    sup = set(rows.loc[(rows["status"] == "suppress") | _model_based(rows), "domain"])
    return tab[~tab["domain"].isin(sup | ctx.prev_suppressed)].reset_index(drop=True)


# --------------------------------------------------------------------------- sections
def _blocks_html(blocks: list[tuple[str, str]]) -> str:
    """Render (kind, text) blocks: big, p, h (bold line), li (grouped in a list), note."""
    out: list[str] = []
    in_list = False
    for kind, text in blocks:
        if kind == "li" and not in_list:
            out.append("<ul>")
            in_list = True
        elif kind != "li" and in_list:
            out.append("</ul>")
            in_list = False
        if kind == "li":
            out.append(f"<li>{_e(text)}</li>")
        elif kind == "h":
            out.append(f"<p><strong>{_e(text)}</strong></p>")
        elif kind == "h3":
            out.append(f"<h3>{_e(text)}</h3>")
        elif kind == "strong":
            out.append(f"<p><strong>{_e(text)}</strong></p>")
        else:
            cls = {"big": ' class="big"', "note": ' class="note"'}.get(kind, "")
            out.append(f"<p{cls}>{_e(text)}</p>")
    if in_list:
        out.append("</ul>")
    return "".join(out)


def _summary_html(ctx: _Context) -> str:
    w = _W[ctx.language]
    rows = ctx.rows
    b: list[tuple[str, str]] = []
    if ctx.national is not None:
        nat = ctx.national
        b.append(("big", w["national"].format(
            est=ctx.num(nat["estimate"]), lo=ctx.num(nat.get("ci_low")),
            hi=ctx.num(nat.get("ci_high")), pct=ctx.pct,
            n=_int(nat.get("n"), ctx.language))))
    else:
        pub = rows.loc[rows["status"] != "suppress", "estimate"]
        b.append(("big", w["mean_only"].format(est=ctx.num(pub.mean()))))
    n_sup = int((rows["status"] == "suppress").sum())
    n_rev = int((rows["status"] == "review").sum())
    n_model = int((_model_based(rows) & (rows["status"] != "suppress")).sum())
    b.append(("p", w["published"].format(
        pub=len(rows) - n_sup, tot=len(rows), sup=n_sup,
        rev=(w["review_part"].format(n=n_rev) if n_rev else "")
        + (w["model_part"].format(n=n_model) if n_model else ""))))
    if ctx.league is not None:
        lt = ctx.league.to_frame().sort_values(["rank", "domain"], kind="stable")
        k = min(int(ctx.league.options.get("top_k", 5)), max(1, len(lt) // 2))
        for head, part in ((w["best"], lt.head(k)), (w["worst"], lt.tail(k))):
            b.append(("h", head))
            b += [("li", w["rank_line"].format(
                rank=_int(r["rank"], ctx.language), name=ctx.name(r["domain"]),
                est=ctx.num(r["estimate"]), lo=_int(r["rank_low"], ctx.language),
                hi=_int(r["rank_high"], ctx.language))) for _, r in part.iterrows()]
    if ctx.change is not None:
        ch = _change_shown(ctx)
        sig = ch[(ch["ci_low"] > 0) | (ch["ci_high"] < 0)].sort_values("change",
                                                                      ascending=False)
        b.append(("h", w["changes"]))
        if sig.empty:
            b.append(("p", w["changes_none"].format(pct=ctx.pct)))
        b += [("li", w["change_line"].format(
            name=ctx.name(r["domain"]), prev=ctx.num(r["estimate_1"]),
            cur=ctx.num(r["estimate_2"]), sign="+" if r["change"] > 0 else "",
            d=ctx.num(r["change"]), lo=ctx.num(r["ci_low"]), hi=ctx.num(r["ci_high"])))
            for _, r in sig.iterrows()]
        if len(ch) >= 10:
            b.append(("note", w["chance"].format(
                pct=ctx.pct, m=len(ch), e=_num(len(ch) * (1 - ctx.pct / 100), 0,
                                               ctx.language))))
    b.append(("note", w["scale_note"].format(top=f"{ctx.scale:g}", d=ctx.decimals)))
    ctx.text["summary"] = b
    return (f'<h2>{_e(w["summary"])}</h2><div class="summary">' + _blocks_html(b)
            + "</div>")


def _text_pages(pdf: Any, title: str, blocks: list[tuple[str, str]]) -> None:
    """Pages of text (A4 portrait) for the PDF: a title, then the blocks, wrapped."""
    import textwrap

    import matplotlib.pyplot as plt

    from .plotting import A4_PORTRAIT

    sizes = {"title": 14.0, "big": 11.0, "h": 10.0, "h3": 10.5, "strong": 9.5, "p": 9.5,
             "li": 9.5, "note": 8.5}
    items = [("title", title), *blocks]
    width_pt = (A4_PORTRAIT[0] - 1.2) * 72
    fig = None
    y = 0.0
    for kind, text in items:
        size = sizes.get(kind, 9.5)
        chars = max(30, int(width_pt / (0.55 * size)))
        prefix = "•  " if kind == "li" else ""
        wrapped = textwrap.fill(prefix + text, chars, subsequent_indent="   " if prefix else "")
        height = (wrapped.count("\n") + 1) * size * 1.35 / 72 / A4_PORTRAIT[1]
        if fig is None or y - height < 0.06:
            if fig is not None:
                pdf.savefig(fig)
                plt.close(fig)
            fig = plt.figure(figsize=A4_PORTRAIT)
            y = 0.95
        fig.text(0.07, y, wrapped, fontsize=size, va="top", ha="left",
                 fontweight="bold" if kind in ("title", "h", "h3", "strong", "big") else
                 "normal", color="0.35" if kind == "note" else "0.1")
        y -= height + (0.012 if kind in ("title", "h3") else 0.006)
    if fig is not None:
        pdf.savefig(fig)
        plt.close(fig)


def _index_html(ctx: _Context, national: Any) -> str:
    from .plotting import plot_agency_index

    w = _W[ctx.language]
    lang = ctx.language
    ref_words = w["ref_national"] if ctx.national is not None else w["ref_mean"]
    out = [f"<h2>{_e(w['index_h'])}</h2>"]
    out.append(_figure(lambda: plot_agency_index(
        ctx.flagged, names=ctx.names, tier=ctx.tier,
        reference=national if national is not None else "mean_of_domains",
        scale=ctx.scale, language=lang, decimals=ctx.decimals),
        caption=w["index_cap"].format(pct=ctx.pct, ref=ref_words), notes=ctx.notes, pdf=ctx.pdf))
    header = [w["rank"], w["agency"], w["index"], w["ci"].format(pct=ctx.pct),
              w["rank_int"], w["n"], w["status"]]
    body: list[list[Any]] = []
    classes: list[str] = []
    last = None
    for _, r in ctx.rows.iterrows():
        if ctx.tier and r["tier"] != last:
            body.append([ctx.tier_label(r["tier"])])
            classes.append("tier")
            last = r["tier"]
        n_txt = _int(r.get("n"), lang)
        if r["status"] == "suppress":
            body.append(["", r["name"], "–", "–", "–", n_txt, w["not_pub"]])
            classes.append("suppress")
            continue
        note = w["review"] if r["status"] == "review" else ""
        if str(r.get("source", "direct")) not in ("direct", "design-based", "nan"):
            note = (note + "; " if note else "") + w["model"]
        rint = (f"{_int(r['rank_low'], lang)}-{_int(r['rank_high'], lang)}"
                if pd.notna(r.get("rank_low")) else "–")
        body.append([_int(r["rank"], lang), r["name"], ctx.num(r["estimate"]),
                     f"{ctx.num(r['ci_low'])}-{ctx.num(r['ci_high'])}", rint, n_txt, note])
        classes.append(r["status"] if r["status"] == "review" else (
            "model" if r["status"] != "suppress" and note.endswith(w["model"]) else ""))
    out.append(_table(header, body, classes=classes, text_cols={1, 6},
                      caption=w["table_cap"]))
    out.append(_not_published_html(ctx))
    return "".join(out)


def _not_published_html(ctx: _Context) -> str:
    w = _W[ctx.language]
    rows = ctx.rows
    out = [f"<h3>{_e(w['not_pub_h'])}</h3>"]
    sup = rows[rows["status"] == "suppress"]
    if sup.empty:
        out.append("<p>" + _e(w["none_sup"]) + "</p>")
    else:
        out.append('<p class="note">' + _e(w["not_pub_intro"]) + "</p><ul>")
        for reason, idx in _reason_groups(sup, ctx.rule, ctx.language):
            listed = ", ".join(f"{sup['name'].iloc[i]} (n = {_int(sup['n'].iloc[i], ctx.language)})"
                               for i in idx)
            out.append(f"<li><strong>{_e(reason[:1].upper() + reason[1:])}</strong>: "
                       f"{_e(listed)}</li>")
        out.append("</ul>")
    model = rows[_model_based(rows) & (rows["status"] != "suppress")]
    if not model.empty:
        out.append(f"<h3>{_e(w['sa_list_h'])}</h3>")
        out.append('<p class="note">' + _e(w["sa_intro"]) + "</p><ul>")
        for _, r in model.iterrows():
            n_r = r.get("n")
            extra = (f"; {w['sa_synthetic']}" if pd.notna(n_r) and float(n_r) == 0 else "")
            out.append(f"<li>{_e(r['name'])}: {_e(ctx.num(r['estimate']))} "
                       f"({_e(ctx.num(r['ci_low']))}-{_e(ctx.num(r['ci_high']))}), "
                       f"n = {_e(_int(n_r, ctx.language))}, {_e(w['model'])}{_e(extra)}</li>")
        out.append("</ul>")
    rev = rows[rows["status"] == "review"]
    if not rev.empty:
        out.append(f"<h3>{_e(w['review_h'])}</h3><ul>")
        for reason, idx in _reason_groups(rev, ctx.rule, ctx.language):
            listed = ", ".join(f"{rev['name'].iloc[i]} (n = {_int(rev['n'].iloc[i], ctx.language)})"
                               for i in idx)
            out.append(f"<li><strong>{_e(reason[:1].upper() + reason[1:])}</strong>: "
                       f"{_e(listed)}</li>")
        out.append("</ul>")
    return "".join(out)


def _elements_html(ctx: _Context) -> str:
    from .plotting import plot_element_heatmap

    el, _ = _level_data(ctx.flagged, "element")
    if el.empty:
        return ""
    w = _W[ctx.language]
    return (f"<h2>{_e(w['elements_h'])}</h2>"
            + _figure(lambda: plot_element_heatmap(
                ctx.flagged, names=ctx.names, tier=ctx.tier, scale=ctx.scale,
                language=ctx.language, decimals=ctx.decimals),
                caption=w["elements_cap"], notes=ctx.notes, pdf=ctx.pdf))


def _ranks_html(ctx: _Context) -> str:
    from .plotting import plot_ranks

    if ctx.league is None or not np.isfinite(
            ctx.league.to_frame()["rank_low"].to_numpy(dtype=float)).any():
        return ""
    w = _W[ctx.language]
    pct = round(100 * float(ctx.league.options.get("level", 0.95)))
    return (f"<h2>{_e(w['ranks_h'])}</h2>"
            + _figure(lambda: plot_ranks(ctx.league, names=ctx.names, language=ctx.language),
                      caption=w["ranks_cap"].format(pct=pct), notes=ctx.notes, pdf=ctx.pdf))


def _change_html(ctx: _Context) -> str:
    from .plotting import plot_change

    if ctx.change is None:
        return ""
    w = _W[ctx.language]
    shown = _change_shown(ctx)
    hidden = sorted(set(ctx.change.to_frame()["domain"].astype(str)) - set(shown["domain"]))
    return (f"<h2>{_e(w['change_h'])}</h2>"
            + _figure(lambda: plot_change(ctx.change, names=ctx.names, suppressed=hidden,
                                          scale=ctx.scale, language=ctx.language),
                      caption=w["change_cap"].format(pct=ctx.pct), notes=ctx.notes, pdf=ctx.pdf))


def _agencies_html(ctx: _Context) -> str:
    w = _W[ctx.language]
    lang = ctx.language
    el, _ = _level_data(ctx.flagged, "element")
    it, _ = _level_data(ctx.flagged, "item")
    el["domain"] = el["domain"].astype(str)
    it["domain"] = it["domain"].astype(str)
    q = getattr(ctx.flagged, "questionnaire", None)
    codes = list(q.element_codes) if q is not None else list(pd.unique(el["element"]))
    el_names = dict(zip(codes, _element_names(ctx.flagged, codes, lang)))
    rows = ctx.rows
    pub_el = el[el["status"] != "suppress"].copy()
    pub_el = pub_el[pub_el["domain"].isin(rows.loc[rows["status"] != "suppress", "domain"])]
    pub_el["tier"] = pub_el["domain"].map(ctx.tier_of)
    tier_means = pub_el.groupby(["tier", "element"])["estimate"].mean()
    nat_el = ctx.national_elements
    out = [f"<h2>{_e(w['agencies_h'])}</h2>"]
    is_model = _model_based(rows)
    for _, r in rows.iterrows():
        dom = r["domain"]
        head = (f"{r['name']}" + (f" ({dom})" if str(dom) not in str(r["name"]) else "")
                + (f" — {ctx.tier_label(r['tier'])}" if r["tier"] else ""))
        out.append(f'<section class="agency"><h3>{_e(head)}</h3>')
        if r["status"] == "suppress":
            out.append("<p>" + _e(w["agency_not_pub"].format(
                reason=_reason_words(r, ctx.rule, lang), n=_int(r.get("n"), lang)))
                + "</p></section>")
            continue
        if pd.notna(r.get("rank")):
            line = w["agency_n"].format(
                n=_int(r.get("n"), lang), est=ctx.num(r["estimate"]), lo=ctx.num(r["ci_low"]),
                hi=ctx.num(r["ci_high"]), rank=_int(r["rank"], lang),
                rlo=_int(r.get("rank_low"), lang), rhi=_int(r.get("rank_high"), lang))
        else:
            line = w["agency_n_norank"].format(
                n=_int(r.get("n"), lang), est=ctx.num(r["estimate"]), lo=ctx.num(r["ci_low"]),
                hi=ctx.num(r["ci_high"]))
        if r["status"] == "review":
            line += f" ({w['review']}: {_reason_words(r, ctx.rule, lang)})"
        if is_model.loc[_]:
            line += w["sa_agency"]
        out.append("<p>" + _e(line) + "</p>")
        mine = el[el["domain"] == dom].set_index("element")
        header = [w["element"], w["index"], w["ci"].format(pct=ctx.pct), w["n"]]
        if ctx.tier:
            header.append(w["tier_mean"])
        if nat_el is not None:
            header.append(w["national_col"])
        body = []
        cls = []
        for c in codes:
            if c not in mine.index:
                continue
            e = mine.loc[c]
            shown = e["status"] != "suppress"
            row = [el_names.get(c, c), ctx.num(e["estimate"]) if shown else "–",
                   f"{ctx.num(e['ci_low'])}-{ctx.num(e['ci_high'])}" if shown else "–",
                   _int(e.get("n"), lang)]
            if ctx.tier:
                row.append(ctx.num(tier_means.get((r["tier"], c), np.nan)))
            if nat_el is not None:
                row.append(ctx.num(nat_el.get(c, np.nan)))
            body.append(row)
            cls.append("" if shown else "suppress")
        out.append(_table(header, body, classes=cls, text_cols={0}))
        items = it[it["domain"] == dom]
        labels = dict(getattr(q, "item_labels", {}) or {}) if q is not None else {}
        ib, icls = [], []
        for _, x in items.iterrows():
            shown = x["status"] != "suppress"
            label = labels.get(str(x["item"]), "")
            ib.append([f"{x['item']} {label}".strip(), ctx.num(x["estimate"]) if shown else "–",
                       f"{ctx.num(x['ci_low'])}-{ctx.num(x['ci_high'])}" if shown else "–",
                       _int(x.get("n"), lang)])
            icls.append("" if shown else "suppress")
        out.append("<details open><summary>" + _e(w["criterion"]) + "</summary>"
                   + _table([w["criterion"], w["index"], w["ci"].format(pct=ctx.pct), w["n"]],
                            ib, classes=icls, text_cols={0}) + "</details></section>")
    return "".join(out)


def _rule_sentence(ctx: _Context) -> str:
    w = _W[ctx.language]
    r = ctx.rule
    parts = []
    if r.get("min_n") is not None:
        parts.append(w["rule_n"].format(v=r["min_n"]))
    if r.get("max_rse") is not None:
        parts.append(w["rule_rse"].format(v=_num(100 * float(r["max_rse"]), 0, ctx.language)))
    if r.get("min_effective_n") is not None:
        parts.append(w["rule_neff"].format(v=_num(float(r["min_effective_n"]), 0,
                                                  ctx.language)))
    if r.get("max_ci_width") is not None:
        parts.append(w["rule_width"].format(v=_num(100 * float(r["max_ci_width"]), 0,
                                                   ctx.language)))
    joiner = " hoặc " if ctx.language == "vi" else " or "
    return w["rule_txt"].format(parts=joiner.join(parts) or "–",
                                df=_num(float(r.get("min_df") or 0), 0, ctx.language))


def _methods_html(ctx: _Context, design: Any, allocation: Any,
                  response_rates: pd.DataFrame | None) -> str:
    from .plotting import plot_allocation, plot_response_rates, plot_weights

    w = _W[ctx.language]
    lang = ctx.language
    out = [f"<h2>{_e(w['methods_h'])}</h2>"]
    q = getattr(ctx.flagged, "questionnaire", None)
    if design is not None:
        out.append(f"<h3>{_e(w['design_h'])}</h3><p>" + _e(w["design_txt"].format(
            n=_int(design.n, lang), strata=_int(design.n_strata, lang),
            psu=_int(design.n_psu, lang), df=_int(design.degf, lang),
            r=_int(_weighted_rows(design), lang))) + "</p>")
    if allocation is not None:
        moe = getattr(allocation, "national_moe", None)
        out.append(f"<h3>{_e(w['alloc_h'])}</h3><p>" + _e(w["alloc_txt"].format(
            n=_int(allocation.n, lang), h=_int(len(allocation.strata), lang),
            moe=w["alloc_moe"].format(m=_num(100 * moe, 1, lang)) if moe else "")) + "</p>")
        out.append(_figure(lambda: plot_allocation(allocation, language=lang),
                           caption=w["alloc_cap"], notes=ctx.notes, pdf=ctx.pdf))
    if response_rates is not None:
        out.append(f"<h3>{_e(w['rr_h'])}</h3>")
        fig_html = _figure(lambda: plot_response_rates(response_rates, language=lang),
                           caption=w["rr_cap"], notes=ctx.notes, pdf=ctx.pdf)
        if fig_html:
            r = 100 * pd.to_numeric(response_rates["rate"]).to_numpy(dtype=float)
            out.append("<p>" + _e(w["rr_txt"].format(mean=_num(r.mean(), 1, lang),
                                                     low=_num(r.min(), 1, lang),
                                                     high=_num(r.max(), 1, lang))) + "</p>")
            out.append(fig_html)
    if design is not None:
        out.append(f"<h3>{_e(w['weight_h'])}</h3>")
        header = [w["step"], w["method"], w["converged"], w["kish"], w["neff"], w["wmin"],
                  w["wmax"], w["rows_w"]]
        body = []
        for i, st in enumerate(getattr(design, "history", ()) or ()):
            conv = w["na"] if st.converged is None else (w["yes"] if st.converged else w["no"])
            body.append([str(i + 1), st.method, conv, _num(st.kish_deff, 2, lang),
                         _int(st.effective_n, lang), _num(st.weight_min, 2, lang),
                         _num(st.weight_max, 2, lang), _int(st.n_rows, lang)])
        out.append(_table(header, body, text_cols={1, 2}))
        out.append(_figure(lambda: plot_weights(design, language=lang),
                           caption=w["weight_cap"], notes=ctx.notes, pdf=ctx.pdf))
    opts = dict(getattr(ctx.flagged, "options", {}) or {})
    out.append(f"<h3>{_e(w['var_h'])}</h3>")
    ci = str(opts.get("ci_method", "t"))
    if opts.get("variance") == "replicate":
        reps = getattr(ctx.flagged, "replicate_estimates", None)
        r = next(iter(reps.values())).shape[0] if reps else (
            design.replicates.n_replicates if design is not None and design.replicates
            else "–")
        kind = str(opts.get("replicate_kind") or "")
        out.append("<p>" + _e(w["var_replicate"].format(
            r=r, kind=_KIND_WORDS[lang].get(kind, kind), ci=_CI_WORDS[lang].get(ci, ci),
            pct=ctx.pct)) + "</p>")
    else:
        out.append("<p>" + _e(w["var_taylor"].format(ci=_CI_WORDS[lang].get(ci, ci),
                                                      pct=ctx.pct)) + "</p>")
    out.append(f"<h3>{_e(w['rule_h'])}</h3><p>" + _e(_rule_sentence(ctx)) + "</p>")
    if ctx.small_area is not None:
        out.append(f"<h3>{_e(w['sa_h'])}</h3>" + "".join(
            "<p>" + _e(t) + "</p>" for t in _small_area_sentences(ctx)))
    if q is not None:
        codes = ", ".join(str(c) for c in getattr(q, "satisfied_codes", ()))
        out.append(f"<h3>{_e(w['q_h'])}</h3><p>" + _e(w["q_txt"].format(
            name=q.name, k=len(q.items), e=len(q.elements), codes=codes)) + "</p>")
        out.append("<p><strong>" + _e(w["q_recon"] if getattr(q, "reconstructed", False)
                                      else w["q_conf"]) + "</strong></p>")
    doc = "".join(out)
    ctx.text["methods"] = _text_blocks(doc)
    return doc


def _small_area_sentences(ctx: _Context) -> list[str]:
    """The methods paragraph of the small-area model: model, covariates, sigma2_v, psi."""
    from scipy import stats

    from ..sae.area_level import METHOD_NAMES
    from ..sae.variances import describe_psi

    w = _W[ctx.language]
    fit = ctx.small_area
    covs = ", ".join(fit.covariates) or "–"
    z = float(stats.norm.ppf(0.5 + float(fit.level) / 2))
    coefs = "; ".join(f"{t} {e:.4g} ({s:.3g})" for t, e, s in zip(
        fit.coefficients["term"], fit.coefficients["estimate"], fit.coefficients["se"],
        strict=True))
    return [w["sa_txt"].format(
        m=fit.n_sampled, covs=covs, s2=f"{fit.sigma2_v:.4g}", method=METHOD_NAMES[fit.method],
        boundary=w["sa_boundary"] if fit.boundary else "",
        psi=describe_psi(fit.sampling_variances), z=_num(z, 2, ctx.language),
        mse=fit.mse_method, model=fit.model),
        w["sa_coef"].format(coefs=coefs)]


def _weighted_rows(design: Any) -> int:
    history = tuple(getattr(design, "history", ()) or ())
    if history:
        return int(history[-1].n_rows)
    w = np.asarray(design.weights, dtype=float)
    return int((w > 0).sum())


def _text_blocks(doc: str) -> list[tuple[str, str]]:
    """Headings and paragraphs of an HTML fragment (figures and tables left out) as blocks."""
    import re

    bare = re.sub(r"<figure>.*?</figure>|<h2>.*?</h2>", "", doc, flags=re.S)
    blocks: list[tuple[str, str]] = []
    pattern = (r"<h3>(.*?)</h3>|<p><strong>(.*?)</strong></p>|<p>(.*?)</p>"
               r"|<table>(.*?)</table>")
    for m in re.finditer(pattern, bare, flags=re.S):
        if m.group(1) is not None:
            blocks.append(("h3", html.unescape(m.group(1))))
        elif m.group(2) is not None:
            blocks.append(("strong", html.unescape(m.group(2))))
        elif m.group(3) is not None:
            blocks.append(("p", html.unescape(re.sub(r"<[^>]+>", "", m.group(3)))))
        else:  # a table: one line per row, "header: value" pairs
            rows = re.findall(r"<tr[^>]*>(.*?)</tr>", m.group(4), flags=re.S)
            cells = [[html.unescape(c) for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r)]
                     for r in rows]
            if cells:
                head = cells[0]
                for row in cells[1:]:
                    blocks.append(("li", "; ".join(f"{h}: {v}" for h, v in zip(head, row,
                                                                               strict=False))))
    return blocks


# --------------------------------------------------------------------------- workbook
def _sheets(ctx: _Context, design: Any, allocation: Any,
            response_rates: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    w = _W[ctx.language]
    lang = ctx.language
    d = ctx.decimals

    def val(x: Any, shown: bool, decimals: int = d) -> Any:
        if not shown or x is None or pd.isna(x):
            return None
        return round(ctx.scale * float(x), decimals)

    sheets: dict[str, pd.DataFrame] = {}
    info: list[tuple[str, Any]] = []
    if ctx.national is not None:
        nat = ctx.national
        info += [(w["national_col"] + " – " + w["index"], val(nat["estimate"], True)),
                 (w["ci"].format(pct=ctx.pct), f"{ctx.num(nat.get('ci_low'))}-"
                                                f"{ctx.num(nat.get('ci_high'))}"),
                 (w["n"], _int(nat.get("n"), lang))]
    rows = ctx.rows
    info += [(w["agency"], len(rows)),
             (w["not_pub"], int((rows["status"] == "suppress").sum())),
             (w["review"], int((rows["status"] == "review").sum())),
             (w["rule_h"], _rule_sentence(ctx))]
    if ctx.small_area is not None:
        info.append((w["sa_h"], " ".join(_small_area_sentences(ctx))))
    q = getattr(ctx.flagged, "questionnaire", None)
    if q is not None:
        info.append((w["q_h"], f"{q.name}: " + (w["q_recon"] if q.reconstructed
                                                  else w["q_conf"])))
    sheets[w["sheet_summary"]] = pd.DataFrame(info, columns=[w["item"], w["value"]])
    recs = []
    for _, r in rows.iterrows():
        shown = r["status"] != "suppress"
        recs.append({
            w["rank"]: None if not shown or pd.isna(r.get("rank")) else int(r["rank"]),
            w["code"]: r["domain"], w["agency"]: r["name"],
            w["tier"]: ctx.tier_label(r["tier"]) if r["tier"] else None,
            w["index"]: val(r["estimate"], shown),
            w["ci"].format(pct=ctx.pct) + " –": val(r["ci_low"], shown),
            w["ci"].format(pct=ctx.pct) + " +": val(r["ci_high"], shown),
            w["rank_int"] + " –": None if not shown or pd.isna(r.get("rank_low"))
            else int(r["rank_low"]),
            w["rank_int"] + " +": None if not shown or pd.isna(r.get("rank_high"))
            else int(r["rank_high"]),
            w["n"]: None if pd.isna(r.get("n")) else int(r["n"]),
            w["status"]: w["not_pub"] if not shown else (
                w["review"] if r["status"] == "review" else (
                    w["model"] if str(r.get("source", "direct")) not in (
                        "direct", "design-based", "nan") else "")),
        })
    sheets[w["sheet_agencies"]] = pd.DataFrame(recs)
    sup_agency = set(rows.loc[rows["status"] == "suppress", "domain"])
    for level, sheet, col in (("element", w["sheet_elements"], w["element"]),
                              ("item", w["sheet_items"], w["criterion"])):
        tab, _ = _level_data(ctx.flagged, level)
        key = "element" if level == "element" else "item"
        recs = []
        for _, r in tab.iterrows():
            dom = str(r["domain"])
            shown = r["status"] != "suppress" and dom not in sup_agency
            recs.append({w["code"]: dom, w["agency"]: ctx.name(dom), col: r[key],
                         w["index"]: val(r["estimate"], shown),
                         w["ci"].format(pct=ctx.pct) + " –": val(r["ci_low"], shown),
                         w["ci"].format(pct=ctx.pct) + " +": val(r["ci_high"], shown),
                         w["n"]: None if pd.isna(r.get("n")) else int(r["n"]),
                         w["status"]: "" if shown else w["not_pub"]})
        sheets[sheet] = pd.DataFrame(recs)
    sup = rows[rows["status"] == "suppress"]
    sheets[w["sheet_notpub"]] = pd.DataFrame(
        {w["code"]: sup["domain"].to_numpy(), w["agency"]: sup["name"].to_numpy(),
         w["n"]: sup["n"].to_numpy() if "n" in sup.columns else None,
         w["reason"]: [_reason_words(r, ctx.rule, lang) for _, r in sup.iterrows()]})
    if ctx.change is not None:
        ch = _change_shown(ctx)
        sheets[w["sheet_change"]] = pd.DataFrame({
            w["code"]: ch["domain"], w["agency"]: ch["domain"].map(ctx.name),
            w["last_year"]: [val(x, True) for x in ch["estimate_1"]],
            w["this_year"]: [val(x, True) for x in ch["estimate_2"]],
            w["change"]: [val(x, True) for x in ch["change"]],
            w["ci"].format(pct=ctx.pct) + " –": [val(x, True) for x in ch["ci_low"]],
            w["ci"].format(pct=ctx.pct) + " +": [val(x, True) for x in ch["ci_high"]],
            w["significant"]: np.where((ch["ci_low"] > 0) | (ch["ci_high"] < 0), w["yes"],
                                       w["no"]),
        })
    if design is not None:
        sheets[w["sheet_weight"]] = pd.DataFrame([
            {w["step"]: i + 1, w["method"]: st.method,
             w["converged"]: w["na"] if st.converged is None else (
                 w["yes"] if st.converged else w["no"]),
             w["kish"]: round(st.kish_deff, 3), w["neff"]: round(st.effective_n),
             w["wmin"]: round(st.weight_min, 3), w["wmax"]: round(st.weight_max, 3),
             w["rows_w"]: st.n_rows}
            for i, st in enumerate(getattr(design, "history", ()) or ())])
    if response_rates is not None:
        rr = response_rates
        sheets[w["sheet_rr"]] = pd.DataFrame({
            w["code"]: rr["agency"].astype(str).to_numpy(),
            w["agency"]: (rr["name"] if "name" in rr.columns else rr["agency"].astype(str)
                          .map(ctx.name)).to_numpy(),
            w["rate"]: np.round(100 * pd.to_numeric(rr["rate"]).to_numpy(dtype=float), 1)})
    if allocation is not None:
        at = allocation.to_frame()
        frame = {w["code"]: at.index.astype(str), w["frame"]: at["N_h"].to_numpy(),
                 w["selected"]: at["n_h"].to_numpy(),
                 w["exp_resp"]: np.round(at["expected_respondents"].to_numpy(dtype=float), 1)}
        if "expected_moe" in at.columns:
            frame[w["exp_moe"]] = np.round(100 * at["expected_moe"].to_numpy(dtype=float), 1)
        sheets[w["sheet_alloc"]] = pd.DataFrame(frame)
    return sheets


def _cell(v: Any) -> Any:
    """A plain cell value (text, number, bool or None); other objects become text."""
    if v is None or isinstance(v, (str, bool, int, float, np.integer, np.floating)):
        return v
    return str(v)


def _write_excel(path: Path, sheets: Mapping[str, pd.DataFrame]) -> None:
    try:
        with pd.ExcelWriter(path, engine="openpyxl") as writer:
            for name, frame in sheets.items():
                out = frame.copy()
                out.columns = [_cell(str(c)) for c in out.columns]
                for c in out.columns:
                    if not (pd.api.types.is_numeric_dtype(out[c])
                            or pd.api.types.is_bool_dtype(out[c])):
                        out[c] = out[c].astype(object).map(_cell)
                out.to_excel(writer, sheet_name=name[:31], index=False)
                ws = writer.sheets[name[:31]]
                protect_worksheet(ws)  # data text never becomes a formula
                for k, col in enumerate(out.columns, start=1):
                    width = max([len(str(col))] + [len(str(v)) for v in out[col].head(200)])
                    ws.column_dimensions[ws.cell(row=1, column=k).column_letter].width = \
                        min(60, max(8, math.ceil(width * 1.1)))
    except OSError as exc:
        raise SatsampleError(f"excel_path {str(path)!r} cannot be written: {exc}") from exc
