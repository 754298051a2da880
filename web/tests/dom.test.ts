// Safe DOM building: strings become text nodes, never HTML; no script-capable attributes.
import assert from "node:assert/strict";
import { test } from "node:test";
import { cssColor, h, safeAttribute, textChildren } from "../src/dom";

const PAYLOADS = ['<img src=x a="', '" onerror="alert(1)" b=', "<a href=//ev.il>link</a>"];

/** The little of the DOM that `h` uses; assigning markup (innerHTML) fails the test. */
class FakeElement {
  className = "";
  title = "";
  dataset: Record<string, string> = {};
  attributes: Record<string, string> = {};
  children: unknown[] = [];
  constructor(readonly tagName: string) {}
  setAttribute(name: string, value: string): void {
    this.attributes[name] = value;
  }
  append(...nodes: unknown[]): void {
    this.children.push(...nodes);
  }
  set innerHTML(_markup: string) {
    throw new Error("innerHTML used");
  }
}

(globalThis as unknown as { document: unknown }).document = { createElement: (tag: string) => new FakeElement(tag) };

test("every payload string is appended as a string (Node.append makes it a text node)", () => {
  for (const payload of PAYLOADS) {
    const el = h("td", { title: payload, data: { study: payload } }, payload, h("b", {}, payload)) as unknown as FakeElement;
    assert.equal(el.children[0], payload);
    assert.equal((el.children[1] as FakeElement).children[0], payload);
    assert.equal(el.title, payload, "attribute values are set as values, not parsed");
    assert.equal(el.dataset.study, payload);
  }
});

test("attributes that can run script or load a URL are refused", () => {
  for (const name of ["onerror", "onClick", "href", "src", "style", "srcdoc", "formaction"]) {
    assert.throws(() => safeAttribute(name), /refusing/);
  }
  assert.equal(safeAttribute("aria-label"), "aria-label");
  assert.throws(() => h("img", { attrs: { onerror: "alert(1)" } }));
});

test("only plain hex colours reach a style", () => {
  assert.equal(cssColor("#1a2B3c"), "#1a2B3c");
  assert.equal(cssColor("#abc"), "#abc");
  for (const bad of ["red;background:url(//ev.il)", "url(x)", "#12345g", "", "expression(alert(1))"]) {
    assert.equal(cssColor(bad), "#888888");
  }
});

test("numbers become strings and empty children are dropped", () => {
  assert.deepEqual(textChildren(["a", 3, null, undefined, false, "b"]), ["a", "3", "b"]);
});
