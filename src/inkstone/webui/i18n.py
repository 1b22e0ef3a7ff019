"""UI strings in English and Chinese; Gradio picks one from the browser's language."""
from __future__ import annotations

import gradio as gr

# A key named like a config field ("lr", "load_in_4bit") labels that field's input (webui/config_inputs.py).
EN = {
    "tab_write": "Write", "tab_memory": "Memory", "tab_train": "Train", "tab_settings": "Settings",
    "story": "Story", "story_text": "Story so far", "instruction": "Instruction (what to write next)",
    "generate": "Write", "stop": "Stop", "append": "Append to story", "output": "Generated text",
    "params": "Sampling", "temperature": "Temperature", "top_p": "Top-p", "top_k": "Top-k",
    "max_tokens": "Max new tokens", "rep_penalty": "Repetition penalty", "seed": "Seed (-1: random)",
    "use_memory": "Use story memory", "adapter": "Model / adapter", "refresh": "Refresh",
    "prompt_seen": "What the model saw", "kind": "Kind", "title": "Title / name", "text": "Text",
    "chapter": "Chapter", "entry_id": "Entry id (empty: new entry)", "save": "Save", "new_entry": "New", "delete": "Delete",
    "search": "Search", "query": "Search memory", "top_k_results": "Results",
    "train_data": "Training data (file or folder of .jsonl)", "run_name": "Run name (empty: automatic)",
    "epochs": "Epochs", "batch_size": "Batch size", "grad_accum": "Gradient accumulation",
    "lr": "Learning rate", "lora_r": "LoRA rank", "max_seq_length": "Max sequence length",
    "max_steps": "Max steps (-1: by epochs)", "load_in_4bit": "4-bit base (QLoRA)", "start_train": "Start training",
    "stop_train": "Stop (saves a checkpoint)", "loss": "Loss", "status": "System status",
    "memory_entries": "Memory entries", "filter_kind": "Show kind", "all": "all",
    "compare_runs": "Runs and checkpoints side by side",
    "mode": "Mode", "passage": "Passage to rewrite", "accept_chapter": "Accept as chapter → memory proposals",
    "accept_and_extract": "Accept story text as chapter", "proposals": "Proposed memories (untick to reject)",
    "save_proposals": "Save ticked memories", "tab_history": "History", "restore": "Show",
    "rerun": "Re-run (same seed)", "import": "Import JSON", "export": "Export JSON",
    "import_export": "Import / export / delete story",
    "delete_story": "Delete story (memories and history)", "confirm_story": "Type the story name to confirm",
    "tab_compare": "Compare", "compare_go": "Compare", "compare_keep": "Keep (append to story)",
    "compare_model": "Model / adapter", "compare_shared": "Shared settings",
    "tab_story": "Story", "story_current": "Story (pick one, or type a new name)", "story_list": "Stories",
    "chapters": "Chapters", "chapter_text": "Chapter text",
    "summary": "Summary (goes into every later prompt of this story)", "save_summary": "Save summary",
    "regen_summary": "Regenerate summary", "export_story": "Export the story's text", "export_format": "Format",
    "versions": "Versions of this passage (newest first)", "undo_append": "Undo append",
    "search_results": "Search results (click one to edit it)", "history_id": "Entry",
    "from_picture": "From a picture (a model trained with train-vision)", "picture": "Picture",
    "describe_picture": "Describe it", "scene_from_picture": "Write a scene from it",
    # help under the Train tab's inputs: the config schema's descriptions
    "epochs_info": "passes over the training data", "batch_size_info": "blocks per forward pass",
    "grad_accum_info": "forward passes per optimizer step", "lr_info": "peak learning rate (cosine schedule)",
    "lora_r_info": "LoRA rank", "max_seq_length_info": "tokens per packed training block",
    "max_steps_info": "optimizer steps; > 0 overrides epochs",
    "load_in_4bit_info": "load the base model 4-bit (QLoRA) for training",
}

ZH = {
    "tab_write": "写作", "tab_memory": "记忆", "tab_train": "训练", "tab_settings": "设置",
    "story": "故事", "story_text": "前文", "instruction": "写作要求（接下来写什么）",
    "generate": "生成", "stop": "停止", "append": "接入正文", "output": "生成结果",
    "params": "采样参数", "temperature": "温度", "top_p": "Top-p", "top_k": "Top-k",
    "max_tokens": "最大生成长度", "rep_penalty": "重复惩罚", "seed": "随机种子（-1 为随机）",
    "use_memory": "使用故事记忆", "adapter": "模型 / 适配器", "refresh": "刷新",
    "prompt_seen": "模型看到的提示", "kind": "类别", "title": "标题 / 名称", "text": "内容",
    "chapter": "章节", "entry_id": "条目 ID（留空为新建）", "save": "保存", "new_entry": "新建", "delete": "删除",
    "search": "搜索", "query": "搜索记忆", "top_k_results": "结果数",
    "train_data": "训练数据（.jsonl 文件或文件夹）", "run_name": "运行名称（留空自动生成）",
    "epochs": "训练轮数", "batch_size": "批大小", "grad_accum": "梯度累积",
    "lr": "学习率", "lora_r": "LoRA 秩", "max_seq_length": "最大序列长度",
    "max_steps": "最大步数（-1 按轮数）", "load_in_4bit": "4 位量化基座（QLoRA）", "start_train": "开始训练",
    "stop_train": "停止（保存检查点）", "loss": "损失", "status": "系统状态",
    "memory_entries": "记忆条目", "filter_kind": "显示类别", "all": "全部",
    "compare_runs": "训练记录与检查点对比",
    "mode": "模式", "passage": "要改写的段落", "accept_chapter": "定稿为章节 → 记忆提取",
    "accept_and_extract": "将前文定稿为一章", "proposals": "建议的记忆（取消勾选即拒绝）",
    "save_proposals": "保存勾选的记忆", "tab_history": "历史", "restore": "查看",
    "rerun": "按原种子重跑", "import": "导入 JSON", "export": "导出 JSON",
    "import_export": "导入 / 导出 / 删除故事",
    "delete_story": "删除故事（记忆与历史）", "confirm_story": "输入故事名以确认",
    "tab_compare": "对比", "compare_go": "对比生成", "compare_keep": "采用（接入前文）",
    "compare_model": "模型 / 适配器", "compare_shared": "共用设置",
    "epochs_info": "遍历训练数据的次数", "batch_size_info": "每次前向计算的块数",
    "grad_accum_info": "每次优化器更新累积的前向次数", "lr_info": "峰值学习率（余弦退火）", "lora_r_info": "LoRA 秩",
    "max_seq_length_info": "每个打包训练块的词元数", "max_steps_info": "优化器步数；大于 0 时覆盖训练轮数",
    "load_in_4bit_info": "训练时以 4 位量化加载基座模型（QLoRA）",
    "tab_story": "故事", "story_current": "当前故事（选择，或输入新名称）", "story_list": "故事列表",
    "chapters": "章节", "chapter_text": "章节正文",
    "summary": "摘要（会放入本故事之后的每次提示）", "save_summary": "保存摘要",
    "regen_summary": "重新生成摘要", "export_story": "导出故事正文", "export_format": "格式",
    "versions": "本段的各个版本（最新在前）", "undo_append": "撤销接入",
    "search_results": "搜索结果（点击一条即可编辑）", "history_id": "条目",
    "from_picture": "看图写作（需用 train-vision 训练过的模型）", "picture": "图片",
    "describe_picture": "描述图片", "scene_from_picture": "据图写一个场景",
}

# Tabs of the later modes keep their strings beside them, one module each.
from . import recut_strings, vision_strings, vocab_strings  # noqa: E402

for _strings in (recut_strings, vocab_strings, vision_strings):
    EN.update(_strings.EN)
    ZH.update(_strings.ZH)

i18n = gr.I18n(en=EN, zh=ZH, **{"zh-CN": ZH, "zh-TW": ZH})


# ---- text made by handlers: table headers, notes and errors -------------------------------
# Gradio translates component labels in the browser; what a handler returns is plain text,
# so handlers pick the language from the request's Accept-Language, as the browser does.
MESSAGES = {
    # table headers
    "col_title": ("Title", "标题"), "col_kind": ("Kind", "类别"), "col_text": ("Text", "内容"),
    "col_chapter": ("Chapter", "章节"), "col_score": ("Score", "相关度"), "col_time": ("Time", "时间"),
    "col_source": ("Source", "来源"), "col_mode": ("Mode", "模式"), "col_adapter": ("Adapter", "适配器"),
    "col_seed": ("Seed", "种子"), "col_tokens": ("Tokens", "词元数"), "col_finish": ("Ended", "结束"),
    "col_output": ("Output", "生成内容"), "col_story": ("Story", "故事"), "col_chapters": ("Chapters", "章数"),
    "col_chars": ("Characters", "字数"), "col_updated": ("Last change", "最后修改"), "col_no": ("#", "序号"),
    "col_summary": ("Summary", "摘要"), "col_id": ("Id", "编号"),
    "col_keep": ("Keep", "保留"),
    # the Recut clip table keeps the names its API clients read in English
    "col_hook": ("hook", "钩子"), "col_first_id": ("first_id", "起始字幕"), "col_last_id": ("last_id", "结束字幕"),
    "col_start": ("start", "开始"), "col_end": ("end", "结束"), "col_cue_text": ("text", "字幕"),
    "col_round": ("round", "轮次"), "col_coverage": ("coverage", "覆盖率"), "col_missing": ("missing", "未用的词"),
    "col_model": ("model", "模型"), "col_first_round": ("first round", "首轮覆盖率"), "col_kept": ("kept", "最终覆盖率"),
    "col_rounds": ("rounds", "轮数"), "col_density": ("density", "密度"),
    # notes and errors
    "write_first": ("Write something first: a story to continue or an instruction.",
                    "请先写点什么：要续写的前文，或一条写作要求。"),
    "engine_restarting": ("Engine restarting: {err}", "引擎正在重启：{err}"),
    "stopped_after": ("stopped after {n} tokens", "已停止，写了 {n} 个词元"),
    "loading_adapter": ("loading adapter…", "正在加载适配器…"),
    "meter_prompt": ("prompt {p} tokens + {w} to write, of {c} in context", "提示 {p} 词元 + 待写 {w}，上下文共 {c}"),
    "meter_memories": ("memories {t} tokens ({n}): {names}", "记忆 {t} 词元（{n} 条）：{names}"),
    "meter_summaries": ("chapter summaries {t} tokens ({n})", "章节摘要 {t} 词元（{n} 条）"),
    "meter_cut": ("cut to fit: {what}", "为放入上下文而删去：{what}"),
    "cut_story": ("the oldest {n} characters of the story so far", "前文最早的 {n} 个字"),
    "cut_memories": ("{n} less relevant memories", "{n} 条较不相关的记忆"),
    "estimate": ("about {s} s for {n} tokens at the {rate:.1f} tok/s measured here",
                 "按本机实测 {rate:.1f} 词元/秒，{n} 个词元约需 {s} 秒"),
    "run_done": ("{n} tokens, {rate:.1f} tok/s, first token {ttft} ({reason})",
                 "{n} 个词元，{rate:.1f} 词元/秒，首词元 {ttft}（{reason}）"),
    "nothing_to_accept": ("Nothing to accept: the story text is empty.", "没有可定稿的内容：前文为空。"),
    "chapter_kept": ("Chapter kept (#{id}). {n} memories proposed: untick what is wrong, edit, then save.",
                     "已定稿为第 {id} 号章节。模型建议了 {n} 条记忆：取消勾选错误的，修改后保存。"),
    "summary_refused": (" No summary stored ({why}): write one in the Story tab.",
                        " 未保存摘要（{why}）：请在“故事”页填写。"),
    "summary_is": (" Summary: {s}", " 摘要：{s}"),
    "saved_memories": ("Saved {n} memories; {r} rejected.", "已保存 {n} 条记忆，拒绝 {r} 条。"),
    "memory_added": ("Added “{t}” ({k}) to story '{s}'.", "已添加“{t}”（{k}）到故事“{s}”。"),
    "memory_updated": ("Updated “{t}” ({k}).", "已更新“{t}”（{k}）。"),
    "memory_deleted": ("Deleted “{t}” ({k}).", "已删除“{t}”（{k}）。"),
    "editing": ("Editing “{t}”: Save changes it, New starts a blank memory.",
                "正在编辑“{t}”：保存即修改它，“新建”开始一条空白记忆。"),
    "nothing_deleted": ("Nothing deleted.", "未删除任何内容。"),
    "pick_memory": ("Pick a memory first: click its row in the table.", "请先在表格中点击一条记忆。"),
    "no_memory": ("No memory with id {id}: it may have been deleted already.", "找不到这条记忆：可能已被删除。"),
    "type_query": ("Type what to search for.", "请输入要搜索的内容。"),
    "choose_json": ("Choose a JSON file to import.", "请选择要导入的 JSON 文件。"),
    "imported": ("Imported {n} memories into story '{s}'.", "已导入 {n} 条记忆到故事“{s}”。"),
    "skipped": ("- skipped {e}", "- 跳过 {e}"),
    "confirm_delete_story": ("To delete a story, type its exact name in the confirmation box.",
                             "要删除故事，请在确认框中输入它的完整名称。"),
    "story_deleted": ("Deleted story '{s}': {m} memories and {h} history entries.",
                      "已删除故事“{s}”：{m} 条记忆，{h} 条历史。"),
    "story_info": ("**{s}** · {c} chapters · {n} characters in chapters · draft {d} characters",
                   "**{s}** · {c} 章 · 章节共 {n} 字 · 草稿 {d} 字"),
    "pick_chapter": ("Pick a chapter first: click its row.", "请先点击一个章节。"),
    "summary_saved": ("Summary of “{t}” saved; later prompts use it.", "“{t}”的摘要已保存，之后的提示会用到它。"),
    "summary_proposed": ("A new summary is in the box: edit it if needed, then save.",
                         "新摘要已填入：可修改后保存。"),
    "summary_bad": ("The model's summary is not usable ({why}); write one yourself.",
                    "模型给出的摘要不可用（{why}）：请自己写一句。"),
    "no_history": ("No history entry {id}.", "找不到历史条目 {id}。"),
    "history_deleted": ("Deleted entry {id}.", "已删除条目 {id}。"),
    "no_run": ("No training run started in this session.", "本次会话尚未开始训练。"),
    "undo_nothing": ("Nothing to undo.", "没有可撤销的操作。"),
}


def lang_of(request) -> str:
    """'zh' when the browser prefers Chinese, else 'en' (no request: English)."""
    headers = getattr(request, "headers", None) or {}
    accept = (headers.get("accept-language") or "").lower()
    return "zh" if accept.startswith("zh") else "en"


def say(request, key: str, **values) -> str:
    en, zh = MESSAGES[key]
    return (zh if lang_of(request) == "zh" else en).format(**values)


def headers(request, *keys: str) -> list[str]:
    return [say(request, f"col_{k}") for k in keys]
