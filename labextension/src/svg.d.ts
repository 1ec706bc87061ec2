// SVG files are bundled as strings (the labextension builder's raw loader; jest's raw transform).
declare module '*.svg' {
  const svgstr: string;
  export default svgstr;
}
