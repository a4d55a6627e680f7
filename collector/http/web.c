/* GET /?domain=: the comparison for a chosen domain, as a page (/ without
 * domain= is the overview, collector/http/overview.c). Self-contained:
 * its script and style come from the collector itself (/static/), nothing
 * from anywhere else, so it works on an isolated collector and leaks
 * nothing about who looks at what. Being separate files, not inline, lets
 * the page's Content-Security-Policy forbid every script and style the
 * collector did not serve, an injected one included. */
#include <string.h>

#include "collector/http/html.h"
#include "collector/http/request.h"
#include "collector/http/routes.h"

static const char px__page[] =
    "<!doctype html>\n"
    "<html lang=en><head><meta charset=utf-8>\n"
    "<meta name=viewport content='width=device-width,initial-scale=1'>\n"
    "<title>parallax: where does the view shift?</title>\n"
    "<link rel=stylesheet href=/static/app.css>\n"
    "</head><body>\n"
    "<h1>parallax</h1>\n"
    "<p class=lead>The same service, seen from many countries. A certificate only one "
    "country is shown, or an answer only one country gets, is where the view shifts.</p>\n"
    "<form id=f><label>Domain <input id=domain name=domain placeholder=www.icloud.com "
    "autocomplete=off></label> <button>Compare</button></form>\n"
    "<div id=status>Choose a domain.</div>\n"
    "<table id=results hidden><thead><tr><th>country</th><th>network</th><th>addresses</th>"
    "<th>leaf sha256</th><th>issuer</th><th>valid</th><th>verdict</th></tr></thead>"
    "<tbody></tbody></table>\n"
    "<script src=/static/app.js></script></body></html>\n";

static const char px__css[] =
    "body{font:15px/1.4 system-ui,sans-serif;margin:2em auto;max-width:72em;padding:0 1em;color:#222}\n"
    "h1{font-size:1.4em;margin-bottom:.2em}p.lead{color:#555;margin-top:0}\n"
    "form{margin:1em 0}input{font:inherit;padding:.3em;width:20em}button{font:inherit;padding:.3em .8em}\n"
    "table{border-collapse:collapse;width:100%;margin-top:1em}\n"
    "th,td{border-bottom:1px solid #ddd;padding:.35em .5em;text-align:left;vertical-align:top}\n"
    "th{background:#f4f4f4}code{font-size:.9em}\n"
    ".v-tls_interception{background:#fdd}.v-dns_inconsistent{background:#fec}\n"
    ".v-tls_blocked{background:#ffd}.v-tls_divergent{background:#f3e8ff}\n"
    ".v-consistent{background:#efe}.v-insufficient_data{color:#777}\n"
    ".verdict{font-weight:600}.evidence{font-size:.85em;color:#444}#status{color:#555}\n"
    ".why{display:block;font-size:.85em;color:#333;max-width:40em}.observed{font-size:.85em}\n"
    "caption{text-align:left;color:#555;padding:.3em 0}.counts{font-size:.85em;color:#444}\n"
    "td.none{color:#777}form label{margin-right:1em}th a,td a{color:inherit}\n";

static const char px__js[] =
    "'use strict';\n"
    "function el(tag, text, cls){const e=document.createElement(tag);"
    "if(text!==undefined)e.textContent=text;if(cls)e.className=cls;return e;}\n"
    "function cell(row, parts){const td=el('td');parts.forEach((p,i)=>{if(i)td.appendChild(el('br'));"
    "td.appendChild(typeof p==='string'?document.createTextNode(p):p);});row.appendChild(td);}\n"
    "async function show(domain){\n"
    "  const status=document.getElementById('status'), table=document.getElementById('results');\n"
    "  const body=table.querySelector('tbody'); body.replaceChildren(); table.hidden=true;\n"
    "  status.textContent='Comparing '+domain+'…';\n"
    "  let doc;\n"
    "  try{const r=await fetch('/api/v1/compare?domain='+encodeURIComponent(domain));\n"
    "    doc=await r.json(); if(!r.ok)throw new Error(doc.detail||r.status);}\n"
    "  catch(e){status.textContent='Cannot compare '+domain+': '+e.message;return;}\n"
    "  if(!doc.vantages.length){status.textContent='No measurements of '+domain+' in this window.';return;}\n"
    "  for(const g of doc.vantages){\n"
    "    const tr=el('tr',undefined,'v-'+g.verdict); tr.dataset.cc=g.probe_cc; tr.dataset.verdict=g.verdict;\n"
    "    cell(tr,[g.probe_cc]); cell(tr,[g.probe_asn]);\n"
    "    cell(tr,g.addresses.map(a=>el('code',a.address)));\n"
    "    cell(tr,g.addresses.map(a=>el('code',a.leaf_sha256?a.leaf_sha256.slice(0,16):(a.failure||'-'))));\n"
    "    cell(tr,g.addresses.map(a=>a.issuer||'-'));\n"
    "    cell(tr,g.addresses.map(a=>a.verified?'yes':'no'));\n"
    "    const v=[el('span',g.verdict,'verdict'),(Math.round(g.confidence*100))+'% of '+g.vantage_count+' vantage(s)'];\n"
    "    const o=g.observed;\n"
    "    if(o&&o.anomalous>0)v.push(el('span',o.ongoing?'ongoing: '+o.anomalous+' of '+o.measurements+' measurements, since '+o.first_seen"
    ":'intermittent: '+o.anomalous+' of '+o.measurements+' measurements, last seen '+o.last_seen+', clean since '+o.clean_since,'observed'));\n"
    "    if(g.verdict==='tls_divergent')v.push(el('span','a valid chain from a CA no other group sees here: a lead to check, not proof','why'));\n"
    "    for(const ev of g.evidence){v.push(el('span',ev.rule+(ev.address?' at '+ev.address:'')+"
    "(ev.leaf_sha256?' leaf '+ev.leaf_sha256.slice(0,16):'')+(ev.self_signed?' (self-signed)':''),'evidence'));"
    "if(ev.explanation)v.push(el('span',ev.explanation,'why'));}\n"
    "    cell(tr,v); body.appendChild(tr);\n"
    "  }\n"
    "  table.hidden=false;\n"
    "  status.textContent=domain+': '+doc.vantages.length+' vantage group(s), '+doc.since+' to '+doc.until+'.';\n"
    "}\n"
    "const params=new URLSearchParams(location.search), input=document.getElementById('domain');\n"
    "document.getElementById('f').addEventListener('submit',e=>{e.preventDefault();"
    "history.replaceState(null,'','?domain='+encodeURIComponent(input.value));show(input.value);});\n"
    "if(params.get('domain')){input.value=params.get('domain');show(input.value);}\n";


enum MHD_Result px_web_page(px_request_t *r) {
  static const char *const extra[] = {"Content-Security-Policy", PX_PAGE_CSP, NULL};
  return px_respond_with(r, MHD_HTTP_OK, "text/html; charset=utf-8", px__page,
                         sizeof(px__page) - 1, extra);
}

enum MHD_Result px_web_static(px_request_t *r) {
  if (strcmp(r->path, "/static/app.js") == 0)
    return px_respond(r, MHD_HTTP_OK, "text/javascript; charset=utf-8", px__js, sizeof(px__js) - 1);
  if (strcmp(r->path, "/static/app.css") == 0)
    return px_respond(r, MHD_HTTP_OK, "text/css; charset=utf-8", px__css, sizeof(px__css) - 1);
  return px_respond_error(r, MHD_HTTP_NOT_FOUND, "not_found", "no such file");
}
