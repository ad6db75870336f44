// The chat app at / (index.html loads this bundle as /app.js). Preact renders; ChatStore holds the
// state and talks to the server through @imlog/sdk.
//
// Everything users write — names, messages, group names — is rendered as text: Preact sets it as
// text nodes and attribute values, and nothing here hands Preact raw markup (web/test/app.test.mjs
// checks the sources, and that markup in names and messages shows as its characters).
import {render} from "preact";
import {App} from "./app.js";
import {ChatStore} from "./store.js";

const store = new ChatStore();
render(<App store={store} />, document.getElementById("app")!);
