"use strict";(self.rspackChunkipar_widgets=self.rspackChunkipar_widgets||[]).push([[0],{19(r,o,a){var e=a(20),i=a.n(e),t=a(21),n=(a.n(t))()(i());n.push([r.id,`/*
 * The "Parallel Clusters" sidebar.  Colours, fonts and spacing come from JupyterLab's CSS
 * variables only, so the panel follows the light, dark and any other theme.
 */

.ipar-ClustersPanel {
  background: var(--jp-layout-color1);
  color: var(--jp-ui-font-color1);
  font-family: var(--jp-ui-font-family);
  font-size: var(--jp-ui-font-size1);
  min-width: 240px;
  overflow-y: auto;
}

.ipar-panel {
  display: flex;
  flex-direction: column;
  gap: 8px;
  padding: 8px 12px 16px;
}

.ipar-header {
  display: flex;
  align-items: center;
  justify-content: space-between;
}

.ipar-title {
  margin: 0;
  font-size: var(--jp-ui-font-size0);
  font-weight: 600;
  letter-spacing: 1px;
  text-transform: uppercase;
  color: var(--jp-ui-font-color1);
}

/* -- buttons -------------------------------------------------------------------------------- */
.ipar-button {
  display: inline-flex;
  align-items: center;
  justify-content: center;
  gap: 4px;
  min-height: 24px;
  padding: 0 10px;
  border: var(--jp-border-width) solid var(--jp-border-color1);
  border-radius: var(--jp-border-radius);
  background: var(--jp-layout-color2);
  color: var(--jp-ui-font-color1);
  font-family: inherit;
  font-size: var(--jp-ui-font-size1);
  line-height: 1;
  cursor: pointer;
  white-space: nowrap;
}

.ipar-button:hover:not(:disabled) {
  background: var(--jp-layout-color3);
}

.ipar-button:focus-visible,
.ipar-panel input:focus-visible,
.ipar-panel summary:focus-visible {
  outline: 2px solid var(--jp-brand-color1);
  outline-offset: 1px;
}

.ipar-button:disabled {
  cursor: default;
  opacity: 0.55;
}

.ipar-button-accept {
  border-color: var(--jp-brand-color1);
  background: var(--jp-brand-color1);
  color: var(--jp-ui-inverse-font-color0);
}

.ipar-button-accept:hover:not(:disabled) {
  border-color: var(--jp-brand-color0);
  background: var(--jp-brand-color0);
}

.ipar-button-warn {
  border-color: var(--jp-error-color1);
  background: transparent;
  color: var(--jp-error-color1);
}

.ipar-button-warn:hover:not(:disabled) {
  background: var(--jp-error-color3);
  color: var(--jp-error-color0);
}

.ipar-icon-button {
  min-width: 24px;
  padding: 0;
  border-color: transparent;
  background: transparent;
}

.ipar-icon {
  display: inline-flex;
}

.ipar-icon svg {
  width: 16px;
  height: 16px;
}

/* -- the start form ------------------------------------------------------------------------- */
.ipar-start-form {
  display: flex;
  flex-direction: column;
  gap: 6px;
  padding: 8px;
  border: var(--jp-border-width) solid var(--jp-border-color2);
  border-radius: var(--jp-border-radius);
  background: var(--jp-layout-color0);
}

.ipar-form-row {
  display: flex;
  align-items: flex-end;
  gap: 6px;
}

.ipar-field {
  display: flex;
  flex-direction: column;
  gap: 2px;
  min-width: 0;
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
}

.ipar-field-profile {
  flex: 1 1 auto;
}

.ipar-field-n {
  flex: 0 0 64px;
}

.ipar-panel input.jp-mod-styled {
  box-sizing: border-box;
  width: 100%;
  height: 24px;
  padding: 0 6px;
  border: var(--jp-border-width) solid var(--jp-border-color1);
  border-radius: var(--jp-border-radius);
  background: var(--jp-input-background, var(--jp-layout-color1));
  color: var(--jp-ui-font-color0);
  font-size: var(--jp-ui-font-size1);
}

.ipar-more summary {
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
  cursor: pointer;
}

.ipar-more .ipar-field {
  margin-top: 4px;
}

.ipar-pending {
  margin: 0;
  color: var(--jp-ui-font-color2);
}

/* -- messages ------------------------------------------------------------------------------- */
.ipar-status {
  margin: 4px 0 0;
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
}

.ipar-error {
  display: flex;
  align-items: flex-start;
  gap: 4px;
  padding: 6px 8px;
  border-left: 3px solid var(--jp-error-color1);
  border-radius: var(--jp-border-radius);
  background: var(--jp-error-color3);
  color: var(--jp-ui-font-color0);
  overflow-wrap: anywhere;
  white-space: pre-wrap;
}

[data-jp-theme-light='false'] .ipar-error {
  background: var(--jp-layout-color2);
}

.ipar-error-text {
  flex: 1 1 auto;
  max-height: 12em;
  overflow-y: auto;
}

.ipar-note,
.ipar-muted {
  color: var(--jp-ui-font-color2);
}

.ipar-note {
  margin: 0;
}

.ipar-empty {
  padding: 24px 8px;
  text-align: center;
  color: var(--jp-ui-font-color2);
}

.ipar-empty p {
  margin: 4px 0;
}

.ipar-empty-title {
  color: var(--jp-ui-font-color1);
  font-size: var(--jp-ui-font-size2);
}

/* -- cluster cards -------------------------------------------------------------------------- */
.ipar-clusters {
  display: flex;
  flex-direction: column;
  gap: 8px;
  margin: 0;
  padding: 0;
  list-style: none;
}

.ipar-cluster {
  display: flex;
  flex-direction: column;
  gap: 6px;
  padding: 8px;
  border: var(--jp-border-width) solid var(--jp-border-color2);
  border-radius: var(--jp-border-radius);
  background: var(--jp-layout-color0);
}

.ipar-cluster-head {
  display: flex;
  align-items: center;
  gap: 6px;
}

.ipar-cluster-name {
  flex: 1 1 auto;
  min-width: 0;
  margin: 0;
  font-size: var(--jp-ui-font-size2);
  font-weight: 600;
  overflow-wrap: anywhere;
}

.ipar-cluster-id {
  font-weight: normal;
  color: var(--jp-ui-font-color2);
}

.ipar-dot {
  flex: 0 0 auto;
  width: 8px;
  height: 8px;
  border-radius: 50%;
  background: var(--jp-ui-font-color3);
}

.ipar-dot[data-state='running'] {
  background: var(--jp-success-color1);
}

.ipar-dot[data-state='starting'] {
  background: var(--jp-warn-color1);
}

.ipar-dot[data-state='unresponsive'],
.ipar-dot[data-state='stale'] {
  background: var(--jp-error-color1);
}

.ipar-state {
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
}

.ipar-facts {
  display: grid;
  grid-template-columns: max-content 1fr;
  gap: 2px 8px;
  margin: 0;
}

.ipar-facts dt {
  color: var(--jp-ui-font-color2);
}

.ipar-facts dd {
  margin: 0;
  overflow-wrap: anywhere;
  font-variant-numeric: tabular-nums;
}

.ipar-facts dd.ipar-address {
  overflow: hidden;
  overflow-wrap: normal;
  text-overflow: ellipsis;
  white-space: nowrap;
}

/* -- activity ------------------------------------------------------------------------------- */
.ipar-activity {
  display: grid;
  grid-template-columns: repeat(4, minmax(0, 1fr));
  gap: 4px;
}

.ipar-count {
  display: flex;
  flex-direction: column;
  align-items: center;
  padding: 4px 2px;
  border-radius: var(--jp-border-radius);
  background: var(--jp-layout-color2);
}

.ipar-count-value {
  font-size: var(--jp-ui-font-size2);
  font-weight: 600;
  font-variant-numeric: tabular-nums;
}

.ipar-count-label {
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
}

.ipar-count[data-kind='running'] .ipar-count-value {
  color: var(--jp-brand-color1);
}

.ipar-count[data-kind='done'] .ipar-count-value {
  color: var(--jp-success-color1);
}

.ipar-count[data-kind='failed'] .ipar-count-value,
.ipar-count[data-kind='aborted'] .ipar-count-value {
  color: var(--jp-error-color1);
}

/* Fixed layout keeps the table inside the card however narrow the sidebar is. */
.ipar-engines {
  width: 100%;
  border-collapse: collapse;
  table-layout: fixed;
  font-variant-numeric: tabular-nums;
}

.ipar-engines th:nth-child(1) {
  width: 46px;
}

.ipar-engines th:nth-child(2) {
  width: 80px;
}

.ipar-engines th.ipar-engine-actions-col {
  width: 24px;
}

/* With usage reports: narrower first columns make room for CPU over memory. */
.ipar-engines.ipar-with-usage th:nth-child(1) {
  width: 40px;
}

.ipar-engines.ipar-with-usage th:nth-child(2) {
  width: 54px;
}

.ipar-engines th.ipar-usage-col {
  width: 64px;
  text-align: right;
}

.ipar-engines td.ipar-usage {
  text-align: right;
  font-size: var(--jp-ui-font-size0);
  line-height: 1.2;
}

.ipar-usage .ipar-cpu,
.ipar-usage .ipar-memory {
  display: block;
}

.ipar-engines tfoot th,
.ipar-engines tfoot td {
  border-bottom: none;
  color: var(--jp-ui-font-color1);
  font-weight: 600;
}

.ipar-deaths {
  margin: 4px 0;
  padding: 0;
  list-style: none;
  font-size: var(--jp-ui-font-size0);
}

.ipar-death summary {
  color: var(--jp-error-color1);
  cursor: pointer;
}

.ipar-death-report {
  margin: 2px 0 4px 12px;
  font-family: var(--jp-code-font-family);
  font-size: var(--jp-code-font-size);
  /* the sidebar is narrow: wrap long lines rather than hide them behind a scrollbar */
  white-space: pre-wrap;
  overflow-wrap: anywhere;
}

.ipar-engines th,
.ipar-engines td {
  box-sizing: border-box;
  overflow: hidden;
  text-overflow: ellipsis;
  white-space: nowrap;
}

.ipar-engines th {
  padding: 2px 3px;
  border-bottom: var(--jp-border-width) solid var(--jp-border-color2);
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
  font-weight: normal;
  text-align: left;
}

.ipar-engines td {
  padding: 1px 3px;
  border-bottom: var(--jp-border-width) solid var(--jp-border-color3);
}

.ipar-engines td.ipar-engine-actions {
  padding: 0;
  text-align: right;
}

.ipar-task {
  font-family: var(--jp-code-font-family);
  font-size: var(--jp-ui-font-size0);
}

.ipar-busy-for {
  color: var(--jp-ui-font-color2);
  font-size: var(--jp-ui-font-size0);
}

.ipar-badge {
  display: inline-block;
  padding: 0 6px;
  border-radius: 8px;
  background: var(--jp-layout-color2);
  color: var(--jp-ui-font-color1);
  font-size: var(--jp-ui-font-size0);
}

.ipar-badge[data-state='busy'] {
  background: var(--jp-brand-color1);
  color: var(--jp-ui-inverse-font-color0);
}

.ipar-launch-failure pre {
  max-height: 10em;
  margin: 4px 0 0;
  overflow: auto;
  font-size: var(--jp-code-font-size);
}

.ipar-actions {
  display: flex;
  flex-wrap: wrap;
  align-items: center;
  gap: 6px;
}

.ipar-add-form {
  display: flex;
  gap: 4px;
}

.ipar-add-form input.jp-mod-styled {
  width: 48px;
}

.ipar-visually-hidden {
  position: absolute;
  width: 1px;
  height: 1px;
  overflow: hidden;
  clip: rect(0 0 0 0);
  white-space: nowrap;
}

.ipar-engine-sets {
  list-style: none;
  margin: 4px 0;
  padding: 0;
  font-size: var(--jp-ui-font-size0);
}

.ipar-engine-set-launcher {
  font-weight: 600;
}
`,""]),a.d(o,{},{A:n})},21(r){r.exports=function(r){var o=[];return o.toString=function(){return this.map(function(o){var a="",e=void 0!==o[5];return o[4]&&(a+="@supports (".concat(o[4],") {")),o[2]&&(a+="@media ".concat(o[2]," {")),e&&(a+="@layer".concat(o[5].length>0?" ".concat(o[5]):""," {")),a+=r(o),e&&(a+="}"),o[2]&&(a+="}"),o[4]&&(a+="}"),a}).join("")},o.i=function(r,a,e,i,t){"string"==typeof r&&(r=[[null,r,void 0]]);var n={};if(e)for(var p=0;p<this.length;p++){var l=this[p][0];null!=l&&(n[l]=!0)}for(var s=0;s<r.length;s++){var d=[].concat(r[s]);e&&n[d[0]]||(void 0!==t&&(void 0===d[5]||(d[1]="@layer".concat(d[5].length>0?" ".concat(d[5]):""," {").concat(d[1],"}")),d[5]=t),a&&(d[2]&&(d[1]="@media ".concat(d[2]," {").concat(d[1],"}")),d[2]=a),i&&(d[4]?(d[1]="@supports (".concat(d[4],") {").concat(d[1],"}"),d[4]=i):d[4]="".concat(i)),o.push(d))}},o}},20(r){r.exports=function(r){return r[1]}},13(r){var o=[];function a(r){for(var a=-1,e=0;e<o.length;e++)if(o[e].identifier===r){a=e;break}return a}function e(r,e){for(var i={},t=[],n=0;n<r.length;n++){var p=r[n],l=e.base?p[0]+e.base:p[0],s=i[l]||0,d="".concat(l," ").concat(s);i[l]=s+1;var c=a(d),u={css:p[1],media:p[2],sourceMap:p[3],supports:p[4],layer:p[5]};if(-1!==c)o[c].references++,o[c].updater(u);else{var f=function(r,o){var a=o.domAPI(o);return a.update(r),function(o){o?(o.css!==r.css||o.media!==r.media||o.sourceMap!==r.sourceMap||o.supports!==r.supports||o.layer!==r.layer)&&a.update(r=o):a.remove()}}(u,e);e.byIndex=n,o.splice(n,0,{identifier:d,updater:f,references:1})}t.push(d)}return t}r.exports=function(r,i){var t=e(r=r||[],i=i||{});return function(r){r=r||[];for(var n=0;n<t.length;n++){var p=a(t[n]);o[p].references--}for(var l=e(r,i),s=0;s<t.length;s++){var d=a(t[s]);0===o[d].references&&(o[d].updater(),o.splice(d,1))}t=l}}},15(r){var o={};r.exports=function(r,a){var e=function(r){if(void 0===o[r]){var a=document.querySelector(r);if(window.HTMLIFrameElement&&a instanceof window.HTMLIFrameElement)try{a=a.contentDocument.head}catch(r){a=null}o[r]=a}return o[r]}(r);if(!e)throw Error("Couldn't find a style target. This probably means that the value for the 'insert' parameter is invalid.");e.appendChild(a)}},17(r){r.exports=function(r){var o=document.createElement("style");return r.setAttributes(o,r.attributes),r.insert(o,r.options),o}},16(r,o,a){r.exports=function(r){var o=a.nc;o&&r.setAttribute("nonce",o)}},14(r){r.exports=function(r){if("u"<typeof document)return{update:function(){},remove:function(){}};var o=r.insertStyleElement(r);return{update:function(a){var e,i,t;e="",a.supports&&(e+="@supports (".concat(a.supports,") {")),a.media&&(e+="@media ".concat(a.media," {")),(i=void 0!==a.layer)&&(e+="@layer".concat(a.layer.length>0?" ".concat(a.layer):""," {")),e+=a.css,i&&(e+="}"),a.media&&(e+="}"),a.supports&&(e+="}"),(t=a.sourceMap)&&"u">typeof btoa&&(e+="\n/*# sourceMappingURL=data:application/json;base64,".concat(btoa(unescape(encodeURIComponent(JSON.stringify(t))))," */")),r.styleTagTransform(e,o,r.options)},remove:function(){var r;null===(r=o).parentNode||r.parentNode.removeChild(r)}}}},18(r){r.exports=function(r,o){if(o.styleSheet)o.styleSheet.cssText=r;else{for(;o.firstChild;)o.removeChild(o.firstChild);o.appendChild(document.createTextNode(r))}}},12(r,o,a){var e=a(13),i=a.n(e),t=a(14),n=a.n(t),p=a(15),l=a.n(p),s=a(16),d=a.n(s),c=a(17),u=a.n(c),f=a(18),v=a.n(f),g=a(19),h={};h.styleTagTransform=v(),h.setAttributes=d(),h.insert=l().bind(null,"head"),h.domAPI=n(),h.insertStyleElement=u(),i()(g.A,h),g.A&&g.A.locals&&g.A.locals}}]);