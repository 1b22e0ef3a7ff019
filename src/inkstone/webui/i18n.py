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
}

# Tabs of the later modes keep their strings beside them, one module each.
from . import recut_strings, vision_strings, vocab_strings  # noqa: E402

for _strings in (recut_strings, vocab_strings, vision_strings):
    EN.update(_strings.EN)
    ZH.update(_strings.ZH)

i18n = gr.I18n(en=EN, zh=ZH, **{"zh-CN": ZH, "zh-TW": ZH})
