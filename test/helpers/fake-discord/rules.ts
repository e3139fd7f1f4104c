// Discord's rules as the fake enforces them: the limits, the error bodies Discord answers with, and pure
// checks over plain data. The REST layer asks these checks and refuses with their RestError unless a test
// disabled the rule by name (`startFakeDiscord({ disabledRules })`), which is how a rule test is shown to
// fail without its rule.
import { ButtonStyle, ComponentType, MessageFlags } from 'discord-api-types/v10';

export const LIMITS = {
  ackWindowMs: 3_000,
  tokenLifetimeMs: 15 * 60_000,
  /** Follow-ups an interaction may send where the app has no bot (user installs in foreign guilds, DMs). */
  userInstallFollowUps: 5,
  /** `attachment_size_limit` of an interaction when a test gives none (10 MiB since 2025). */
  attachmentSizeLimit: 10 * 1024 * 1024,
  filesPerMessage: 10,
  contentLength: 2_000,
  embedsPerMessage: 10,
  legacyActionRows: 5,
  actionRowButtons: 5,
  /** Every component counts, nested ones included, when IS_COMPONENTS_V2 is set. */
  v2Components: 40,
  v2TextLength: 4_000,
  customIdLength: 100,
  buttonLabelLength: 80,
  mediaGalleryItems: { min: 1, max: 10 },
  modalTitleLength: 45,
  modalComponents: 5,
  commands: { chatInput: 100, user: 15, message: 15 },
  commandOptions: 25,
} as const;

/** Names for `disabledRules`. Each names one family of checks below. */
export const RULE_NAMES = [
  /** REST needs `Authorization: Bot <token>` except on interaction and webhook-token routes. */
  'auth',
  /** The first callback must arrive within 3 s of dispatch (404 10062). */
  'ack-window',
  /** One callback per interaction (400 40060). */
  'single-ack',
  /** The interaction webhook works for 15 min after dispatch (401 50027). */
  'token-lifetime',
  /** N requests per window per route and major parameter (429 with Retry-After). */
  'rate-limit',
  /** Each file at most the interaction's attachment_size_limit (413 40005), at most 10 files. */
  'upload-size',
  /** At most 5 follow-ups where the app has no bot (400 40094). */
  'follow-up-limit',
  /** IS_COMPONENTS_V2: no content/embeds with it, never removed, V2 types need it, no flag on a defer. */
  'components-v2',
  /** 40 components, media gallery 1-10 items, custom_id <= 100 and unique, row shapes, attachment refs. */
  'component-limits',
  /** Not empty, content <= 2000, <= 10 embeds, modal shape, callback type fits the interaction. */
  'message-shape',
  /** Registered command names, descriptions, counts. */
  'command-shape',
  /** Signed CDN URLs stop working at `ex` (404). */
  'attachment-url-expiry',
  /** Without the MESSAGE_CONTENT intent, content/attachments/embeds/components of others' messages are empty. */
  'message-content-intent',
] as const;
export type RuleName = (typeof RULE_NAMES)[number];

export interface FormIssueEntry {
  code: string;
  message: string;
}
/** Discord's nested `errors` object: path segments as keys, `_errors` at the leaves. */
export interface FormErrors {
  [key: string]: FormErrors | FormIssueEntry[];
}
export interface ApiErrorBody {
  code: number;
  message: string;
  errors?: FormErrors;
}

/** A refusal in Discord's shape: HTTP status plus `{ code, message, errors? }`. */
export class RestError extends Error {
  constructor(
    readonly status: number,
    readonly body: ApiErrorBody | Record<string, unknown>,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(`${status} ${'message' in body ? String(body.message) : ''}`);
  }
}

const coded = (status: number, code: number, message: string) => () =>
  new RestError(status, { code, message });

export const errors = {
  unauthorized: coded(401, 0, '401: Unauthorized'),
  notFound: coded(404, 0, '404: Not Found'),
  methodNotAllowed: coded(405, 0, '405: Method Not Allowed'),
  invalidJson: coded(400, 50109, 'The request body contains invalid JSON.'),
  unknownInteraction: coded(404, 10062, 'Unknown interaction'),
  alreadyAcknowledged: coded(400, 40060, 'Interaction has already been acknowledged.'),
  invalidWebhookToken: coded(401, 50027, 'Invalid Webhook Token'),
  unknownWebhook: coded(404, 10015, 'Unknown Webhook'),
  unknownMessage: coded(404, 10008, 'Unknown Message'),
  unknownChannel: coded(404, 10003, 'Unknown Channel'),
  unknownApplication: coded(404, 10002, 'Unknown Application'),
  unknownUser: coded(404, 10013, 'Unknown User'),
  unknownCommand: coded(404, 10063, 'Unknown application command'),
  missingAccess: coded(403, 50001, 'Missing Access'),
  cannotEditOthers: coded(403, 50005, 'Cannot edit a message authored by another user'),
  entityTooLarge: coded(413, 40005, 'Request entity too large'),
  maxFollowUps: coded(400, 40094, 'This interaction has hit the maximum number of follow up messages'),
  emptyMessage: coded(400, 50006, 'Cannot send an empty message'),
};

/** One problem in a request body, filed under the rule that found it. */
export interface Issue {
  rule: RuleName;
  path: readonly (string | number)[];
  code: string;
  message: string;
}

/** 400 50035 "Invalid Form Body" with every issue in Discord's nested `errors` tree. */
export function invalidForm(issues: readonly Issue[]): RestError {
  const root: FormErrors = {};
  for (const issue of issues) {
    let node = root;
    for (const segment of issue.path) {
      const key = String(segment);
      const child = node[key];
      if (child && !Array.isArray(child)) node = child;
      else node = node[key] = {};
    }
    const leaf = node._errors;
    const entry = { code: issue.code, message: issue.message };
    if (Array.isArray(leaf)) leaf.push(entry);
    else node._errors = [entry];
  }
  return new RestError(400, { code: 50035, message: 'Invalid Form Body', errors: root });
}

// --- interaction lifetime -------------------------------------------------------------------------------

export function checkAckWindow(dispatchedAt: number, now: number): RestError | undefined {
  return now - dispatchedAt > LIMITS.ackWindowMs ? errors.unknownInteraction() : undefined;
}

export function checkSingleAck(acknowledged: boolean): RestError | undefined {
  return acknowledged ? errors.alreadyAcknowledged() : undefined;
}

export function checkTokenLifetime(dispatchedAt: number, now: number): RestError | undefined {
  return now - dispatchedAt > LIMITS.tokenLifetimeMs ? errors.invalidWebhookToken() : undefined;
}

export function checkFollowUpLimit(botPresent: boolean, sent: number): RestError | undefined {
  return !botPresent && sent >= LIMITS.userInstallFollowUps ? errors.maxFollowUps() : undefined;
}

// --- uploads --------------------------------------------------------------------------------------------

export function checkUploads(files: readonly { size: number }[], sizeLimit: number): RestError | undefined {
  if (files.some((file) => file.size > sizeLimit)) return errors.entityTooLarge();
  if (files.length > LIMITS.filesPerMessage) {
    return invalidForm([
      {
        rule: 'upload-size',
        path: ['files'],
        code: 'BASE_TYPE_MAX_LENGTH',
        message: `Must be ${LIMITS.filesPerMessage} or fewer in length.`,
      },
    ]);
  }
  return undefined;
}

// --- messages -------------------------------------------------------------------------------------------

/** A message as it would be after the request: what the checks judge. */
export interface MessageDraft {
  content: string;
  embeds: readonly unknown[];
  components: readonly unknown[];
  flags: number;
  attachments: readonly { filename: string }[];
  stickers?: number;
  poll?: boolean;
}

const V2_ONLY_TYPES: ReadonlySet<number> = new Set([
  ComponentType.Section,
  ComponentType.TextDisplay,
  ComponentType.Thumbnail,
  ComponentType.MediaGallery,
  ComponentType.File,
  ComponentType.Separator,
  ComponentType.Container,
]);

export function isEmptyMessage(draft: MessageDraft): boolean {
  return (
    draft.content.length === 0 &&
    draft.embeds.length === 0 &&
    draft.components.length === 0 &&
    draft.attachments.length === 0 &&
    !draft.stickers &&
    !draft.poll
  );
}

/** Issues of the message as it would be after a create or an edit (`previousFlags`: before the edit). */
export function messageIssues(draft: MessageDraft, previousFlags?: number): Issue[] {
  const issues: Issue[] = [];
  const v2 = (draft.flags & MessageFlags.IsComponentsV2) !== 0;
  if (draft.content.length > LIMITS.contentLength) {
    issues.push({
      rule: 'message-shape',
      path: ['content'],
      code: 'BASE_TYPE_MAX_LENGTH',
      message: `Must be ${LIMITS.contentLength} or fewer in length.`,
    });
  }
  if (draft.embeds.length > LIMITS.embedsPerMessage) {
    issues.push({
      rule: 'message-shape',
      path: ['embeds'],
      code: 'BASE_TYPE_MAX_LENGTH',
      message: `Must be ${LIMITS.embedsPerMessage} or fewer in length.`,
    });
  }
  if (previousFlags !== undefined && (previousFlags & MessageFlags.IsComponentsV2) !== 0 && !v2) {
    issues.push({
      rule: 'components-v2',
      path: ['flags'],
      code: 'MESSAGE_CANNOT_REMOVE_COMPONENTS_V2_FLAG',
      message: 'The IS_COMPONENTS_V2 flag cannot be removed once set.',
    });
  }
  if (v2) {
    // Judged on the resulting message: an edit that sets the flag must also clear old content.
    for (const field of ['content', 'embeds'] as const) {
      const present = field === 'content' ? draft.content.length > 0 : draft.embeds.length > 0;
      if (present) {
        issues.push({
          rule: 'components-v2',
          path: [field],
          code: 'MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2',
          message: `The '${field}' field cannot be used when using MessageFlags.IS_COMPONENTS_V2`,
        });
      }
    }
  }
  issues.push(...componentIssues(draft.components, v2, draft.attachments));
  return issues;
}

interface Walk {
  v2: boolean;
  count: number;
  textLength: number;
  customIds: Set<string>;
  filenames: ReadonlySet<string>;
  issues: Issue[];
}

/** Every component of a message, walked recursively (rows, containers, sections and their accessories). */
export function componentIssues(
  components: readonly unknown[],
  v2: boolean,
  attachments: readonly { filename: string }[],
): Issue[] {
  const walk: Walk = {
    v2,
    count: 0,
    textLength: 0,
    customIds: new Set(),
    filenames: new Set(attachments.map((a) => a.filename)),
    issues: [],
  };
  const rows = components.filter((c) => typeOf(c) === ComponentType.ActionRow).length;
  if (!v2 && rows > LIMITS.legacyActionRows) {
    walk.issues.push(
      limitIssue(
        ['components'],
        'BASE_TYPE_MAX_LENGTH',
        `Must be ${LIMITS.legacyActionRows} or fewer in length.`,
      ),
    );
  }
  components.forEach((component, index) => {
    visit(component, ['components', index], walk, true);
  });
  if (v2 && walk.count > LIMITS.v2Components) {
    walk.issues.push(
      limitIssue(
        ['components'],
        'COMPONENT_LAYOUT_TOO_MANY_COMPONENTS',
        `Must be ${LIMITS.v2Components} or fewer.`,
      ),
    );
  }
  if (v2 && walk.textLength > LIMITS.v2TextLength) {
    walk.issues.push(
      limitIssue(
        ['components'],
        'COMPONENT_LAYOUT_TEXT_TOO_LONG',
        `Text must be ${LIMITS.v2TextLength} or fewer.`,
      ),
    );
  }
  return walk.issues;
}

function limitIssue(path: readonly (string | number)[], code: string, message: string): Issue {
  return { rule: 'component-limits', path, code, message };
}

function typeOf(component: unknown): number | undefined {
  return isRecord(component) && typeof component.type === 'number' ? component.type : undefined;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function visit(component: unknown, path: (string | number)[], walk: Walk, topLevel: boolean): void {
  walk.count += 1;
  const type = typeOf(component);
  if (!isRecord(component) || type === undefined) {
    walk.issues.push(limitIssue(path, 'MODEL_TYPE_CONVERT', 'Must be a component object with a type.'));
    return;
  }
  if (V2_ONLY_TYPES.has(type) && !walk.v2) {
    walk.issues.push({
      rule: 'components-v2',
      path: [...path, 'type'],
      code: 'COMPONENT_TYPE_REQUIRES_COMPONENTS_V2',
      message: `Component type ${type} needs the IS_COMPONENTS_V2 message flag.`,
    });
  }
  if (!walk.v2 && topLevel && type !== ComponentType.ActionRow) {
    walk.issues.push(
      limitIssue([...path, 'type'], 'UNION_TYPE_CHOICES', 'Top-level components must be action rows.'),
    );
  }
  const customId = component.custom_id;
  if (customId !== undefined) {
    if (typeof customId !== 'string' || customId.length === 0 || customId.length > LIMITS.customIdLength) {
      walk.issues.push(
        limitIssue(
          [...path, 'custom_id'],
          'BASE_TYPE_BAD_LENGTH',
          `Must be between 1 and ${LIMITS.customIdLength} in length.`,
        ),
      );
    } else if (walk.customIds.has(customId)) {
      walk.issues.push(
        limitIssue(
          [...path, 'custom_id'],
          'COMPONENT_CUSTOM_ID_DUPLICATED',
          'Component custom id cannot be duplicated',
        ),
      );
    } else {
      walk.customIds.add(customId);
    }
  }
  switch (type) {
    case ComponentType.ActionRow:
      visitRow(component, path, walk);
      return;
    case ComponentType.Button:
      visitButton(component, path, walk);
      return;
    case ComponentType.TextDisplay:
      walk.textLength += typeof component.content === 'string' ? component.content.length : 0;
      return;
    case ComponentType.MediaGallery: {
      const items = Array.isArray(component.items) ? component.items : [];
      const { min, max } = LIMITS.mediaGalleryItems;
      if (items.length < min || items.length > max) {
        walk.issues.push(
          limitIssue(
            [...path, 'items'],
            'BASE_TYPE_BAD_LENGTH',
            `Must be between ${min} and ${max} in length.`,
          ),
        );
      }
      items.forEach((item, index) => {
        checkMedia(isRecord(item) ? item.media : undefined, [...path, 'items', index, 'media'], walk, false);
      });
      return;
    }
    case ComponentType.Thumbnail:
      checkMedia(component.media, [...path, 'media'], walk, false);
      return;
    case ComponentType.File:
      checkMedia(component.file, [...path, 'file'], walk, true);
      return;
    case ComponentType.Section: {
      const children = Array.isArray(component.components) ? component.components : [];
      children.forEach((child, index) => {
        visit(child, [...path, 'components', index], walk, false);
      });
      if (component.accessory !== undefined) visit(component.accessory, [...path, 'accessory'], walk, false);
      return;
    }
    case ComponentType.Container: {
      const children = Array.isArray(component.components) ? component.components : [];
      children.forEach((child, index) => {
        visit(child, [...path, 'components', index], walk, false);
      });
      return;
    }
    default:
      return;
  }
}

function visitRow(row: Record<string, unknown>, path: (string | number)[], walk: Walk): void {
  const children = Array.isArray(row.components) ? row.components : [];
  const selects = children.filter((c) => {
    const type = typeOf(c);
    return type !== undefined && type >= ComponentType.StringSelect && type <= ComponentType.ChannelSelect;
  }).length;
  const fits =
    children.length >= 1 &&
    (selects === 0 ? children.length <= LIMITS.actionRowButtons : selects === 1 && children.length === 1);
  if (!fits) {
    walk.issues.push(
      limitIssue(
        [...path, 'components'],
        'BASE_TYPE_BAD_LENGTH',
        `An action row holds 1-${LIMITS.actionRowButtons} buttons or one select menu.`,
      ),
    );
  }
  children.forEach((child, index) => {
    visit(child, [...path, 'components', index], walk, false);
  });
}

function visitButton(button: Record<string, unknown>, path: (string | number)[], walk: Walk): void {
  const isLink = button.style === ButtonStyle.Link;
  const isPremium = button.style === ButtonStyle.Premium;
  if (isLink && (typeof button.url !== 'string' || button.custom_id !== undefined)) {
    walk.issues.push(
      limitIssue(path, 'BUTTON_COMPONENT_URL_REQUIRED', 'A link button needs a url and no custom_id.'),
    );
  }
  if (!isLink && !isPremium && typeof button.custom_id !== 'string') {
    walk.issues.push(
      limitIssue(
        [...path, 'custom_id'],
        'BUTTON_COMPONENT_CUSTOM_ID_REQUIRED',
        'A button needs a custom_id.',
      ),
    );
  }
  if (typeof button.label === 'string' && button.label.length > LIMITS.buttonLabelLength) {
    walk.issues.push(
      limitIssue(
        [...path, 'label'],
        'BASE_TYPE_MAX_LENGTH',
        `Must be ${LIMITS.buttonLabelLength} or fewer in length.`,
      ),
    );
  }
}

/** `attachment://name` must name a file of the resulting message; File components accept nothing else. */
function checkMedia(media: unknown, path: (string | number)[], walk: Walk, attachmentOnly: boolean): void {
  const url = isRecord(media) ? media.url : undefined;
  if (typeof url !== 'string' || url.length === 0) {
    walk.issues.push(limitIssue([...path, 'url'], 'BASE_TYPE_REQUIRED', 'This field is required'));
    return;
  }
  if (url.startsWith('attachment://')) {
    if (!walk.filenames.has(url.slice('attachment://'.length))) {
      walk.issues.push(
        limitIssue(
          [...path, 'url'],
          'UNFURLED_MEDIA_ITEM_ATTACHMENT_NOT_FOUND',
          `No attachment named ${url.slice(13)} in the message.`,
        ),
      );
    }
  } else if (attachmentOnly) {
    walk.issues.push(
      limitIssue(
        [...path, 'url'],
        'UNFURLED_MEDIA_ITEM_INVALID_PROTOCOL',
        'File components need attachment://.',
      ),
    );
  }
}

// --- interaction callbacks ------------------------------------------------------------------------------

/** A deferred reply carries only flags, and only EPHEMERAL: Components V2 comes with the later edit. */
export function deferIssues(data: unknown): Issue[] {
  const flags = isRecord(data) && typeof data.flags === 'number' ? data.flags : 0;
  if ((flags & MessageFlags.IsComponentsV2) !== 0) {
    return [
      {
        rule: 'components-v2',
        path: ['data', 'flags'],
        code: 'INTERACTION_DEFERRED_COMPONENTS_V2',
        message: 'A deferred response cannot set IS_COMPONENTS_V2; set it when editing the response.',
      },
    ];
  }
  return [];
}

export function modalIssues(data: unknown): Issue[] {
  const issue = (path: (string | number)[], code: string, message: string): Issue => ({
    rule: 'message-shape',
    path: ['data', ...path],
    code,
    message,
  });
  if (!isRecord(data)) return [issue([], 'BASE_TYPE_REQUIRED', 'This field is required')];
  const issues: Issue[] = [];
  if (
    typeof data.title !== 'string' ||
    data.title.length === 0 ||
    data.title.length > LIMITS.modalTitleLength
  ) {
    issues.push(
      issue(['title'], 'BASE_TYPE_BAD_LENGTH', `Must be between 1 and ${LIMITS.modalTitleLength} in length.`),
    );
  }
  const customId = data.custom_id;
  if (typeof customId !== 'string' || customId.length === 0 || customId.length > LIMITS.customIdLength) {
    issues.push(
      issue(
        ['custom_id'],
        'BASE_TYPE_BAD_LENGTH',
        `Must be between 1 and ${LIMITS.customIdLength} in length.`,
      ),
    );
  }
  const components = Array.isArray(data.components) ? data.components : [];
  if (components.length < 1 || components.length > LIMITS.modalComponents) {
    issues.push(
      issue(
        ['components'],
        'BASE_TYPE_BAD_LENGTH',
        `Must be between 1 and ${LIMITS.modalComponents} in length.`,
      ),
    );
  }
  const ids = new Set<string>();
  const walkIds = (node: unknown, path: (string | number)[]): void => {
    if (!isRecord(node)) return;
    if (typeof node.custom_id === 'string') {
      if (node.custom_id.length > LIMITS.customIdLength) {
        issues.push(issue([...path, 'custom_id'], 'BASE_TYPE_MAX_LENGTH', 'Must be 100 or fewer in length.'));
      }
      if (ids.has(node.custom_id)) {
        issues.push(issue([...path, 'custom_id'], 'COMPONENT_CUSTOM_ID_DUPLICATED', 'Duplicate custom id'));
      }
      ids.add(node.custom_id);
    }
    if (Array.isArray(node.components)) {
      node.components.forEach((child, index) => {
        walkIds(child, [...path, 'components', index]);
      });
    }
    if (node.component !== undefined) walkIds(node.component, [...path, 'component']);
  };
  components.forEach((component, index) => {
    walkIds(component, ['components', index]);
  });
  return issues;
}

// --- application commands -------------------------------------------------------------------------------

const CHAT_INPUT_NAME = /^[-_'\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]{1,32}$/u;

export function commandIssues(commands: readonly unknown[]): Issue[] {
  const issues: Issue[] = [];
  const issue = (path: (string | number)[], code: string, message: string) =>
    issues.push({ rule: 'command-shape', path, code, message });
  const counts = new Map<number, number>();
  const names = new Set<string>();
  commands.forEach((command, index) => {
    if (!isRecord(command)) {
      issue([index], 'MODEL_TYPE_CONVERT', 'Must be an object.');
      return;
    }
    const type = typeof command.type === 'number' ? command.type : 1;
    counts.set(type, (counts.get(type) ?? 0) + 1);
    const name = typeof command.name === 'string' ? command.name : '';
    if (
      type === 1
        ? !CHAT_INPUT_NAME.test(name) || name !== name.toLowerCase()
        : name.length < 1 || name.length > 32
    ) {
      issue([index, 'name'], 'APPLICATION_COMMAND_INVALID_NAME', 'Command name is invalid');
    }
    if (names.has(`${type}:${name}`)) {
      issue(
        [index, 'name'],
        'APPLICATION_COMMANDS_DUPLICATE_NAME',
        'Application command names must be unique',
      );
    }
    names.add(`${type}:${name}`);
    const description = typeof command.description === 'string' ? command.description : '';
    if (type === 1 && (description.length < 1 || description.length > 100)) {
      issue([index, 'description'], 'BASE_TYPE_BAD_LENGTH', 'Must be between 1 and 100 in length.');
    }
    if (type !== 1 && description.length > 0) {
      issue(
        [index, 'description'],
        'APPLICATION_COMMAND_DESCRIPTION_FORBIDDEN',
        'Context menu commands have none.',
      );
    }
    const options = Array.isArray(command.options) ? command.options : [];
    if (options.length > LIMITS.commandOptions) {
      issue(
        [index, 'options'],
        'BASE_TYPE_MAX_LENGTH',
        `Must be ${LIMITS.commandOptions} or fewer in length.`,
      );
    }
    let optionalSeen = false;
    options.forEach((option, o) => {
      if (!isRecord(option)) return;
      const optionName = typeof option.name === 'string' ? option.name : '';
      if (!CHAT_INPUT_NAME.test(optionName) || optionName !== optionName.toLowerCase()) {
        issue([index, 'options', o, 'name'], 'APPLICATION_COMMAND_INVALID_NAME', 'Option name is invalid');
      }
      const optionDescription = typeof option.description === 'string' ? option.description : '';
      if (optionDescription.length < 1 || optionDescription.length > 100) {
        issue(
          [index, 'options', o, 'description'],
          'BASE_TYPE_BAD_LENGTH',
          'Must be between 1 and 100 in length.',
        );
      }
      if (option.required === true && optionalSeen) {
        issue(
          [index, 'options', o],
          'APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID',
          'Required options must be first',
        );
      }
      if (option.required !== true) optionalSeen = true;
    });
  });
  const limits: [number, number][] = [
    [1, LIMITS.commands.chatInput],
    [2, LIMITS.commands.user],
    [3, LIMITS.commands.message],
  ];
  for (const [type, max] of limits) {
    if ((counts.get(type) ?? 0) > max) {
      issue([], 'APPLICATION_COMMANDS_TOO_MANY', `At most ${max} commands of type ${type}.`);
    }
  }
  return issues;
}
