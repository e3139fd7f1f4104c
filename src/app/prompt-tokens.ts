// How much of a prompt CLIP reads: its text tower sees 77 tokens per prompt part (75 of them text),
// and the rest is cut. The playground says so when it happens, from the same tokenizer.json the
// worker loads; a composition root builds it because the tokenizer is worker code.
import { join } from 'node:path';
import type { PromptTokens } from '../bots/web/server.js';
import type { Logger } from '../shared/logger.js';
import { parsePrompt } from '../shared/prompt.js';
import { ClipTokenizer } from '../worker/models/tokenizer.js';

/** The parts of `prompt` that CLIP would cut, from a tokenizer. */
export function promptTokensOf(tokenizer: ClipTokenizer): PromptTokens {
  return (prompt) => {
    let parts: { text: string }[];
    try {
      parts = parsePrompt(prompt);
    } catch {
      return []; // the request check reports syntax errors
    }
    return parts.flatMap(({ text }) => {
      const encoding = tokenizer.encode(text);
      if (!encoding.truncated) return [];
      return [
        {
          part: text,
          tokens: tokenizer.tokenize(text).length,
          used: tokenizer.contextLength - 2,
          usedText: tokenizer.decode(encoding.ids),
        },
      ];
    });
  };
}

/** From MODELS_DIR/clip/tokenizer.json; undefined (no notes) when it cannot be read. */
export async function promptReader(modelsDir: string, logger: Logger): Promise<PromptTokens | undefined> {
  try {
    return promptTokensOf(await ClipTokenizer.fromFolder(join(modelsDir, 'clip')));
  } catch (error) {
    logger.warn({ err: error }, 'no tokenizer: long prompts will be cut without a note');
    return undefined;
  }
}
