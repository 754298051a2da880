// Safe DOM building: every string from a study, a user or a room becomes a text node or a
// checked attribute value, never HTML. The app builds its markup only through `h`.

export type Child = Node | string | number | null | undefined | false;
export type Props = {
  class?: string;
  title?: string;
  data?: Record<string, string>;
  attrs?: Record<string, string>;
};

// Attributes `h` sets from data: none can run script or load a URL (no on*, href, src, style).
const SAFE_ATTRIBUTES = new Set(["type", "id", "min", "max", "step", "value", "aria-label", "role", "lang"]);

/** An element with text children; strings are appended as text (Node.append), never parsed. */
export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Props = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  if (props.class) element.className = props.class;
  if (props.title !== undefined) element.title = props.title;
  for (const [key, value] of Object.entries(props.data ?? {})) element.dataset[key] = value;
  for (const [name, value] of Object.entries(props.attrs ?? {})) element.setAttribute(safeAttribute(name), value);
  element.append(...textChildren(children));
  return element;
}

/** Children for Node.append: numbers as strings, empty ones dropped. */
export function textChildren(children: Child[]): (Node | string)[] {
  return children.filter((c) => c !== null && c !== undefined && c !== false).map((c) => (typeof c === "number" ? String(c) : (c as Node | string)));
}

/** The attribute name if `h` may set it from data; throws for any other (a bug in the caller). */
export function safeAttribute(name: string): string {
  const lower = name.toLowerCase();
  if (!SAFE_ATTRIBUTES.has(lower)) throw new Error(`refusing to set attribute ${JSON.stringify(name)} from data`);
  return lower;
}

/** A CSS colour from data if it is plain hex (#rgb or #rrggbb), else neutral grey. */
export function cssColor(value: string): string {
  return /^#(?:[0-9a-f]{3}|[0-9a-f]{6})$/i.test(value) ? value : "#888888";
}

/** A coloured dot (a participant's or a structure's colour). */
export function dot(color: string): HTMLSpanElement {
  const span = h("span", { class: "dot" });
  span.style.background = cssColor(color);
  return span;
}
